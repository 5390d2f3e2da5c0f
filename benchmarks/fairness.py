"""Fair shares: a 3-variation job started while a big job fills the fleet. How many render
times until it finishes, on a dev server without task fairness (today's FIFO) and with it
(`varia server`'s flags: new matcher + fairness; varia sends a fairness key per job)?

Scaled down from "1,000 variations at concurrency 64" to fit a 2-core machine: the big job
has `BIG` variations at concurrency `BIG_CONCURRENCY` on a fleet of `SLOTS` render slots, so
about `BIG_CONCURRENCY - SLOTS` renders wait in the queue when the small job starts.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from benchmarks.plain import clip
from benchmarks.report import Context, Report, Row, fmt_s, save_chart
from varia import names
from varia.client.jobs import Jobs
from varia.config import Settings
from varia.models import JobRequest
from varia.server import DevServer
from varia.worker import build_worker

NAME = "fairness"
SLOTS = 2
BIG, BIG_CONCURRENCY = 64, 32
SMALL = 3


async def _render_times(handle: WorkflowHandle[Any, Any]) -> list[float]:
    started: dict[int, float] = {}
    times = []
    async for event in handle.fetch_history_events():
        at = event.event_time.ToNanoseconds() / 1e9
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = at
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            if scheduled in started:
                times.append(at - started[scheduled])
    return times


async def _render_events(handle: WorkflowHandle[Any, Any]) -> list[tuple[float, float]]:
    """(scheduled, started) server times of the job's renders."""
    kinds: dict[int, tuple[str, float]] = {}
    pairs = []
    async for event in handle.fetch_history_events():
        at = event.event_time.ToNanoseconds() / 1e9
        if event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            kinds[event.event_id] = (name, at)
        elif event.HasField("activity_task_started_event_attributes"):
            name, scheduled = kinds.get(
                event.activity_task_started_event_attributes.scheduled_event_id, ("", 0.0)
            )
            if name == names.RENDER:
                pairs.append((scheduled, at))
    return pairs


def overtaking(small: list[tuple[float, float]], big: list[tuple[float, float]]) -> float:
    """Mean number of big-job renders started while a small-job render waited in the queue."""
    counts = [sum(1 for _, at in big if scheduled < at < started) for scheduled, started in small]
    return statistics.mean(counts) if counts else 0.0


async def _waiting_renders(handle: WorkflowHandle[Any, Any]) -> int:
    description = await handle.describe()
    return sum(
        1
        for pending in description.raw_description.pending_activities
        if pending.activity_type.name == names.RENDER and not pending.last_started_time.seconds
    )


async def trial(root: Path, source: Path, *, fair: bool) -> dict[str, Any]:
    """One server (fair or FIFO), one worker with `SLOTS` renders, the big then the small job."""
    server = DevServer(ui=False, fairness=fair, log_path=root / f"temporal-{fair}.log")
    async with server:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        task_queue = f"fair-{uuid.uuid4().hex[:6]}"
        settings = Settings(
            TEMPORAL_ADDRESS=server.address,
            VARIA_TASK_QUEUE=task_queue,
            VARIA_MAX_CONCURRENT_RENDERS=SLOTS,
        )
        jobs = Jobs(client, settings)
        # a fresh directory per trial: the job ids repeat, and varia refuses a job directory
        # that an earlier execution of the same id made
        out = Path(tempfile.mkdtemp(prefix=f"out-{fair}-", dir=root))
        async with build_worker(client, settings):
            big_request = JobRequest(
                inputs=[str(source)],
                variations=BIG,
                output_dir=str(out),
                concurrency=BIG_CONCURRENCY,
                threads=1,
            )
            big = await jobs.start_handle(big_request, "big")
            deadline = time.monotonic() + 120
            while await _waiting_renders(big) < BIG_CONCURRENCY - SLOTS - 2:
                assert time.monotonic() < deadline, "the big job never filled the queue"
                await asyncio.sleep(0.1)
            backlog = await _waiting_renders(big)
            small_request = big_request.model_copy(update={"variations": SMALL, "concurrency": 3})
            began = time.monotonic()
            small = await jobs.start_handle(small_request, "small")
            await small.result()
            small_s = time.monotonic() - began
            big_done_after = len([p for p in out.joinpath("big").iterdir() if p.suffix == ".mp4"])
            await big.cancel()
            await asyncio.gather(big.result(), return_exceptions=True)
            renders = await _render_times(big) + await _render_times(small)
            overtaken = overtaking(await _render_events(small), await _render_events(big))
    render_s = statistics.median(renders)
    return {
        "fair": fair,
        "backlog_when_small_started": backlog,
        "small_job_s": small_s,
        "render_s_median": render_s,
        "small_job_in_render_times": small_s / render_s,
        "big_outputs_when_small_done": big_done_after,
        "big_renders_started_while_a_small_render_waited": overtaken,
    }


async def run(ctx: Context) -> Report:
    """Today's FIFO against fairness, one trial each."""
    rounds = 1
    with tempfile.TemporaryDirectory(prefix="varia-fairness-") as tmp:
        root = Path(tmp)
        source = clip(root / "clips", "fair", seconds=2, size="320x240").path
        trials = [
            await trial(root, source, fair=fair) for _ in range(rounds) for fair in (False, True)
        ]
    report = Report(
        NAME,
        f"a {SMALL}-variation job started behind a {BIG}-variation job at concurrency "
        f"{BIG_CONCURRENCY} on {SLOTS} render slots: time to finish, in render times",
    )
    for label, fair in (("FIFO (today)", False), ("fairness key per job", True)):
        mine = [t for t in trials if t["fair"] is fair]
        report.rows.append(
            Row(
                f"{label}: small job done after",
                " / ".join(
                    f"{fmt_s(t['small_job_s'])} = {t['small_job_in_render_times']:.1f} renders,"
                    f" overtaken by {t['big_renders_started_while_a_small_render_waited']:.1f}"
                    f" (backlog {t['backlog_when_small_started']})"
                    for t in mine
                ),
            )
        )
    report.data = {"trials": trials, "slots": SLOTS, "big": BIG, "concurrency": BIG_CONCURRENCY}
    return report


def chart(report: Report, path: Path) -> None:
    """Small job's time in render times, FIFO vs fair."""
    trials = report.data["trials"]
    fig, axis = plt.subplots(figsize=(6, 4))
    labels = ["FIFO" if not t["fair"] else "fair" for t in trials]
    axis.bar(range(len(trials)), [t["small_job_in_render_times"] for t in trials])
    axis.set_xticks(range(len(trials)), labels)
    axis.set_ylabel("small job start to close, in median render times")
    axis.set_title(report.title, fontsize=8)
    save_chart(fig, path)


if __name__ == "__main__":
    import sys

    async def _main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = Context(quick="--quick" in sys.argv, command="", results_dir=Path(tmp) / "r")
            ctx.results_dir.mkdir()
            report = await run(ctx)
        for row in report.rows:
            print(f"{row.figure}: {row.value}")

    asyncio.run(_main())
