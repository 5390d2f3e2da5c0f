"""Start latency: workflow start → first FFmpeg spawned, split into phases by the history."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from benchmarks.history import all_runs
from benchmarks.plain import clip
from benchmarks.report import Context, Report, Row, fmt_s, save_chart
from benchmarks.stack import Stack, new_job_id, request
from benchmarks.stats import summarize
from varia.names import RENDER

NAME = "start"
PHASES = [
    ("start_rpc_s", "client start call returns"),
    ("to_task_s", "-> first workflow task started"),
    ("task_s", "-> first workflow task completed (local: search attributes, prepare)"),
    ("to_render_s", "-> render scheduled (in the first workflow task)"),
    ("dispatch_s", "-> render started (activity dispatch)"),
    ("head_s", "-> FFmpeg running (render activity head, spawn)"),
]
"""All from the server's event times, phase by phase. Prepare runs as a local activity inside
the first workflow task (patch "local-edges"), so that task's time holds it (its marker's own
times do not split it: its `original_schedule_time` came out after its `complete_time`)."""


def _t(event: HistoryEvent) -> float:
    return float(event.event_time.ToNanoseconds()) / 1e9


def _milestones(events: list[HistoryEvent]) -> dict[str, float]:
    """Server times: the first workflow task's start and completion, and each activity type's
    first scheduled, started and completed events."""
    found: dict[str, float] = {}
    names = {}
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            found.setdefault("task.started", _t(event))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            found.setdefault("task.completed", _t(event))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            names[event.event_id] = name
            found.setdefault(f"{name}.scheduled", _t(event))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            name = names[event.activity_task_started_event_attributes.scheduled_event_id]
            found.setdefault(f"{name}.started", _t(event))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name = names[event.activity_task_completed_event_attributes.scheduled_event_id]
            found.setdefault(f"{name}.completed", _t(event))
    return found


def _phases(m: dict[str, float], returned: float, spawn: float) -> dict[str, float]:
    return {
        "to_task_s": m["task.started"] - returned,
        "task_s": m["task.completed"] - m["task.started"],
        "to_render_s": m[f"{RENDER}.scheduled"] - m["task.completed"],
        "dispatch_s": m[f"{RENDER}.started"] - m[f"{RENDER}.scheduled"],
        "head_s": spawn - m[f"{RENDER}.started"],
    }


async def run(ctx: Context) -> Report:
    """Start one-variation jobs one after another; time each to its first FFmpeg."""
    count = 8 if ctx.quick else 20
    jobs: list[dict[str, Any]] = []
    async with Stack(NAME) as stack:
        worker = await stack.start_worker(max_renders=2)
        source = clip(stack.root / "clips", "small", seconds=2, size="320x240")
        for _ in range(count):
            job_id = new_job_id(NAME)
            with stack.watch(worker, job_id) as watch:
                wall = time.time()
                handle = await stack.start_job(
                    worker, request([source.path], 1, stack.out_dir), job_id
                )
                returned = time.time()
                await handle.result()
            spawn = min(span[0] for span in watch.wall_spans().values())
            [history] = await all_runs(stack.client, job_id)
            phases = _phases(_milestones(history.events), returned, spawn)
            jobs.append({"total_s": spawn - wall, "start_rpc_s": returned - wall} | phases)
    warm = jobs[1:]
    totals = summarize([j["total_s"] for j in warm])
    report = Report(
        NAME,
        f"Start latency: {count} one-variation jobs in a row, workflow start "
        "-> first FFmpeg process seen (4 ms poll)",
    )
    report.rows = [
        Row("first job after the worker started (cold)", fmt_s(jobs[0]["total_s"])),
        Row(
            "later jobs p50 / p95 / max",
            f"{fmt_s(totals['p50'])} / {fmt_s(totals['p95'])} / {fmt_s(totals['max'])}",
        ),
    ]
    for key, label in PHASES:
        report.rows.append(Row(f"  {label} (p50)", fmt_s(statistics.median(j[key] for j in warm))))
    report.data = {"jobs": jobs}
    return report


def chart(report: Report, path: Path) -> None:
    """One stacked bar per job: where the time to the first FFmpeg went."""
    jobs = report.data["jobs"]
    fig, axis = plt.subplots(figsize=(9, 4.5))
    bottoms = [0.0] * len(jobs)
    xs = list(range(len(jobs)))
    for key, label in PHASES:
        values = [max(0.0, j[key]) * 1000 for j in jobs]
        axis.bar(xs, values, bottom=bottoms, label=label)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    axis.set_xticks(xs, ["cold", *[str(i) for i in xs[1:]]], fontsize=8)
    axis.set_xlabel("job (in order)")
    axis.set_ylabel("ms from the start call to the first FFmpeg")
    axis.set_title(report.title, fontsize=10)
    axis.legend(fontsize=7)
    save_chart(fig, path)
