"""CLI wall times: each `varia` command as a user runs it, next to two references taken in the
same run — the floor (`python -c 'import temporalio.client'`) and `temporal workflow describe`
on the same job. Median of N runs; goal: every command within 0.15 s of the floor."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt

from benchmarks.plain import clip
from benchmarks.report import Context, Report, Row, fmt_s, save_chart
from benchmarks.stack import Stack, new_job_id, request
from varia.server import temporal_binary

NAME = "cli"
GOAL_S = 0.15


def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


async def run(ctx: Context) -> Report:
    """Time every command N times, interleaved, on one completed job."""
    runs = 2 if ctx.quick else 7
    report = Report(NAME, f"CLI wall time, median of {runs} runs (interleaved)")
    async with Stack(NAME) as stack:
        worker = await stack.start_worker(max_renders=1)
        source = clip(stack.root / "clips", "small", seconds=1, size="320x240")
        job_id = new_job_id("cli")
        handle = await stack.start_job(worker, request([source.path], 1, stack.out_dir), job_id)
        await handle.result()
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": stack.server.address,
            "VARIA_TASK_QUEUE": worker.task_queue,
        }
        varia = str(Path(sys.executable).parent / "varia")
        commands = {
            "floor: python -c 'import temporalio.client'": [
                sys.executable,
                "-c",
                "import temporalio.client",
            ],
            "temporal workflow describe": [
                temporal_binary(),
                "workflow",
                "describe",
                "-w",
                job_id,
                "--address",
                stack.server.address,
            ],
            "varia --help": [varia, "--help"],
            "varia status": [varia, "status", job_id],
            "varia list": [varia, "list"],
            "varia cancel (closed job)": [varia, "cancel", job_id],
            "varia drain (closed job)": [varia, "drain", job_id],
            "varia start": [
                varia,
                "start",
                str(source.path),
                "-n",
                "1",
                "-o",
                str(stack.out_dir),
                "--json",
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(_time(argv, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians["floor: python -c 'import temporalio.client'"]
    for name, median in medians.items():
        is_varia = name.startswith("varia")
        over = median - floor
        report.rows.append(
            Row(
                name,
                f"{fmt_s(median)} (floor {over:+.3f} s)",
                f"<= floor + {GOAL_S} s" if is_varia else "reference",
                (over <= GOAL_S) if is_varia else None,
            )
        )
    report.data = {"runs": runs, "times_s": times, "median_s": medians, "floor_s": floor}
    return report


def chart(report: Report, path: Path) -> None:
    """Bar chart of the medians."""
    medians: dict[str, float] = report.data["median_s"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(list(medians), list(medians.values()))
    ax.axvline(report.data["floor_s"] + GOAL_S, color="red", linestyle="--", label="goal")
    ax.set_xlabel("median wall time (s)")
    ax.legend()
    save_chart(fig, path, dpi=None)
