"""FFmpeg niceness: with FFmpeg saturating both cores (4 encodes at once), do heartbeats stay
fresh and cancels prompt, at FFmpeg nice 0 against nice 10 (`VARIA_FFMPEG_NICE`)?"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from temporalio.api.enums.v1 import PendingActivityState

from benchmarks.cancel import draw_latencies, measure_cancel
from benchmarks.plain import clip
from benchmarks.report import Context, Report, Row, fmt_s, save_chart
from benchmarks.stack import JobHandle, Stack, new_job_id, request
from benchmarks.stats import summarize
from varia import names

NAME = "nice"
CONCURRENCY = 4
NICENESS = (0, 10)


async def _heartbeat_ages(handle: JobHandle, until: float) -> list[float]:
    """Sample every 0.25 s how long ago each running render last heartbeated."""
    ages: list[float] = []
    while time.monotonic() < until:
        description = await handle.describe()
        now = time.time()
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name != names.RENDER:
                continue
            if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                continue
            beat = pending.last_heartbeat_time
            if not beat.seconds:  # no heartbeat yet: age since it started
                beat = pending.last_started_time
            ages.append(now - beat.ToNanoseconds() / 1e9)
        await asyncio.sleep(0.25)
    return ages


async def run(ctx: Context) -> Report:
    """For each niceness: a worker, then jobs under full load cancelled at random points."""
    count = 1 if ctx.quick else 4  # report-only rows; ages are sampled 4 times a second
    rng = random.Random(10)
    results: dict[str, dict[str, Any]] = {}
    async with Stack(NAME) as stack:
        source = clip(stack.root / "clips", "mid", seconds=10, size="640x360").path
        for niceness in NICENESS:
            worker = await stack.start_worker(max_renders=CONCURRENCY, nice=niceness)
            trials: list[dict[str, Any]] = []
            ages: list[float] = []
            for index in range(count):
                job_id = new_job_id(NAME)
                job = request([source], 8, stack.out_dir, concurrency=CONCURRENCY, seed=index)
                with stack.watch(worker, job_id) as watch:
                    handle = await stack.start_job(worker, job, job_id)
                    delay = rng.uniform(1.5, 4.5)
                    ages += await _heartbeat_ages(handle, time.monotonic() + delay)
                    trial = await measure_cancel(stack, worker, handle, watch)
                trial["delay_s"] = delay
                trials.append(trial)
            await stack.stop_worker(worker)
            results[str(niceness)] = {"trials": trials, "heartbeat_ages_s": ages}
    report = Report(
        NAME,
        f"FFmpeg at nice 0 vs 10 with {CONCURRENCY} encodes at once on "
        f"{os.cpu_count()} cores: heartbeat freshness and cancel latency, {count} cancels each",
    )
    for level, data in results.items():
        exited = summarize([t["exited_s"] for t in data["trials"]])
        closed = summarize([t["closed_s"] for t in data["trials"]])
        reached = summarize(
            [
                t["reached_activity_s"]
                for t in data["trials"]
                if t["reached_activity_s"] == t["reached_activity_s"]
            ]
        )
        age = summarize(data["heartbeat_ages_s"])
        report.rows += [
            Row(
                f"nice {level}: cancel -> FFmpeg exited p50 / max",
                f"{fmt_s(exited['p50'])} / {fmt_s(exited['max'])}",
            ),
            Row(
                f"nice {level}: cancel -> closed p50 / max",
                f"{fmt_s(closed['p50'])} / {fmt_s(closed['max'])}",
            ),
            Row(
                f"nice {level}: cancel reaches the render p50 / max",
                f"{fmt_s(reached['p50'])} / {fmt_s(reached['max'])}",
            ),
            Row(
                f"nice {level}: heartbeat age p50 / p95 / max",
                f"{fmt_s(age['p50'])} / {fmt_s(age['p95'])} / {fmt_s(age['max'])}",
            ),
        ]
    report.data = {"concurrency": CONCURRENCY, "results": results}
    return report


def chart(report: Report, path: Path) -> None:
    """Cancel latency per niceness (left, middle) and heartbeat ages (right)."""
    results = report.data["results"]
    fig, axes = plt.subplots(1, len(results) + 1, figsize=(6 * (len(results) + 1), 4.5))
    for axis, (niceness, data) in zip(axes, results.items(), strict=False):
        draw_latencies(axis, data["trials"], f"FFmpeg nice {niceness}, 4 encodes on 2 cores")
        axis.set_xlabel("cancel sent this long after the job started, s")
    ages = axes[-1]
    ages.boxplot(
        [data["heartbeat_ages_s"] for data in results.values()],
        tick_labels=[f"nice {n}" for n in results],
    )
    ages.set_ylabel("seconds since the render's last heartbeat")
    ages.set_title("heartbeat freshness under full load", fontsize=10)
    save_chart(fig, path)
