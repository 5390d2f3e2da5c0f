"""Worker memory from job to job: a worker with glibc's malloc thresholds fixed (varia's default,
`varia.memory`) against one that leaves them to glibc (`VARIA_MALLOC_MMAP_THRESHOLD=0`).

Both run the same sequence of tiny-clip jobs, alternately, one job at a time. After each job
the benchmark reads each worker's resident memory from `/proc` and, as a second method, glibc's
own count of its heap from inside the worker (`benchmarks.worker_main`, on SIGUSR2): memory
held free inside the heap is what the fixed thresholds are meant to stop growing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.plain import clip
from benchmarks.report import Context, Report, Row, save_chart
from benchmarks.stack import Stack, WorkerProcess, new_job_id, request

NAME = "memory"
SETTINGS = {"fixed (default)": {}, "left to glibc": {"VARIA_MALLOC_MMAP_THRESHOLD": "0"}}
MiB = 2**20


async def _counts(worker: WorkerProcess, path: Path, seen: int) -> dict[str, Any]:
    """Ask the worker for glibc's counts; wait (with a deadline) for its new line."""
    os.kill(worker.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) > seen:
            return dict(json.loads(lines[seen]))
        await asyncio.sleep(0.05)
    raise RuntimeError(f"worker {worker.pid} wrote no malloc counts to {path}")


async def run(ctx: Context) -> Report:
    """Alternate jobs between the two workers; read both methods after each job."""
    rounds, per_job = (2, 30) if ctx.quick else (3, 500)
    after: dict[str, list[dict[str, Any]]] = {label: [] for label in SETTINGS}
    async with Stack(NAME) as stack:
        workers = {}
        for label, env in SETTINGS.items():
            path = stack.root / f"mallinfo-{len(workers)}.jsonl"
            env = {**env, "BENCH_MALLINFO": str(path)}
            workers[label] = (await stack.start_worker(max_renders=4, env=env), path)
        tiny = clip(stack.root / "clips", "tiny", seconds=0.2, size="64x64", audio=False)
        for _ in range(rounds):
            for label, (worker, path) in workers.items():
                job = request([tiny.fresh().path], per_job, stack.out_dir, concurrency=4)
                started = time.monotonic()
                await (await stack.start_job(worker, job, new_job_id("mem"))).result()
                wall = time.monotonic() - started
                counts = await _counts(worker, path, len(after[label]))
                after[label].append({"rss": worker.rss_mb(), "wall_s": wall, **counts})
    report = Report(
        NAME,
        f"Worker memory after each of {rounds} jobs of {per_job} tiny variations: glibc's malloc "
        "thresholds fixed (varia's default) or left to glibc, jobs alternating",
    )
    for label, points in after.items():
        report.rows.extend(_rows(label, points, per_job))
    fixed, left = (after[label][-1]["rss"] for label in SETTINGS)
    report.rows.append(
        Row("resident memory after the last job: left to glibc - fixed", f"{left - fixed:+.1f} MiB")
    )
    report.notes.append(
        "growth is from the first job's end to the last one's, per 1,000 variations; "
        "glibc's counts come from mallinfo2 inside the worker (heap = in use + free)"
    )
    report.data = {"per_job": per_job, "after": after}
    return report


def _rows(label: str, points: list[dict[str, Any]], per_job: int) -> list[Row]:
    first, last = points[0], points[-1]
    thousands = (len(points) - 1) * per_job / 1000

    def growth(key: str, scale: float = 1.0) -> str:
        if not thousands or key not in first:
            return "n/a"
        return f"{(last[key] - first[key]) / scale / thousands:+.2f} MiB per 1,000"

    def mib(key: str) -> str:
        return f"{first[key] / MiB:.1f} -> {last[key] / MiB:.1f} MiB" if key in first else "n/a"

    return [
        Row(
            f"{label}: resident memory after the first -> last job",
            f"{first['rss']:.1f} -> {last['rss']:.1f} MiB ({growth('rss')})",
        ),
        Row(
            f"{label}:   glibc heap held free (its own count)",
            f"{mib('free')} ({growth('free', MiB)})",
        ),
        Row(f"{label}:   glibc heap in use", f"{mib('in_use')} ({growth('in_use', MiB)})"),
        Row(
            f"{label}:   job wall time, median",
            f"{statistics.median(p['wall_s'] for p in points):.1f} s",
        ),
    ]


def chart(report: Report, path: Path) -> None:
    """Resident memory and glibc's free heap after each job, per setting."""
    fig, axis = plt.subplots(figsize=(8, 4.5))
    per_job = report.data["per_job"]
    for label, points in report.data["after"].items():
        xs = [(i + 1) * per_job for i in range(len(points))]
        axis.plot(xs, [p["rss"] for p in points], marker="o", label=f"{label}: resident")
        if points and "free" in points[0]:
            frees = [p["free"] / MiB for p in points]
            axis.plot(xs, frees, linestyle="--", marker=".", label=f"{label}: heap held free")
    axis.set_xlabel("variations rendered by this worker")
    axis.set_ylabel("MiB after the job")
    axis.set_title(report.title, fontsize=9)
    axis.legend(fontsize=8)
    save_chart(fig, path)
