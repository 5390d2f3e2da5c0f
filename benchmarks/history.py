"""Reading a job's workflow history: event counts across runs and a per-render time breakdown."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from varia import names


@dataclass(frozen=True)
class RunHistory:
    """One run of a workflow id: its run id, events, and size in bytes."""

    run_id: str
    events: list[HistoryEvent]
    size_bytes: int


async def all_runs(client: Client, workflow_id: str) -> list[RunHistory]:
    """Every run of `workflow_id` (continue-as-new chain), oldest first, with its history."""
    runs = []
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        history = await handle.fetch_history()
        description = await handle.describe()
        size = int(description.raw_description.workflow_execution_info.history_size_bytes)
        runs.append(RunHistory(execution.run_id, list(history.events), size))
    runs.sort(key=lambda run: run.events[0].event_time.ToNanoseconds() if run.events else 0)
    return runs


def _time(event: HistoryEvent) -> float:
    return float(event.event_time.ToNanoseconds()) / 1e9


def render_phases(
    events: list[HistoryEvent], ffmpeg: dict[str, tuple[float, float]]
) -> list[dict[str, Any]]:
    """Split each render's life into phases, joining history (server clock) with the FFmpeg
    spawn/exit times seen by the watch (wall clock, same host), keyed by activity id.

    Phases: `dispatch` scheduled → activity started; `head` started → FFmpeg seen;
    `tail` FFmpeg gone → activity completed; `turnaround` completed → the next render
    scheduled by the workflow task that saw the completion.
    """
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    completed: list[tuple[float, int]] = []
    scheduled_times: list[float] = []
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == names.RENDER:
                scheduled[event.event_id] = (attrs.activity_id, _time(event))
                scheduled_times.append(_time(event))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = _time(event)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs_c = event.activity_task_completed_event_attributes
            completed.append((_time(event), attrs_c.scheduled_event_id))
    phases = []
    for done_at, event_id in completed:
        if event_id not in scheduled:
            continue
        activity_id, scheduled_at = scheduled[event_id]
        spawn, exit_ = ffmpeg.get(activity_id, (float("nan"), float("nan")))
        later = [t for t in scheduled_times if t >= done_at]
        phases.append(
            {
                "activity_id": activity_id,
                "dispatch_s": started.get(event_id, float("nan")) - scheduled_at,
                "head_s": spawn - started.get(event_id, float("nan")),
                "ffmpeg_s": exit_ - spawn,
                "tail_s": done_at - exit_,
                "turnaround_s": (min(later) - done_at) if later else float("nan"),
            }
        )
    return phases


def median_phases(phases: list[dict[str, Any]]) -> dict[str, float]:
    """The median of each phase over renders (NaNs left out)."""
    keys = ("dispatch_s", "head_s", "ffmpeg_s", "tail_s", "turnaround_s")
    medians = {}
    for key in keys:
        values = [p[key] for p in phases if p[key] == p[key]]
        medians[key] = statistics.median(values) if values else float("nan")
    return medians


def scheduled_after_cancel(events: list[HistoryEvent]) -> int:
    """Render activities the workflow scheduled after it recorded the cancel request."""
    cancel_seen = False
    count = 0
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            cancel_seen = True
        elif cancel_seen and event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            count += attrs.activity_type.name == names.RENDER
    return count


def task_timings(events: list[HistoryEvent]) -> dict[str, list[float]]:
    """Seconds per render (scheduled → started, started → completed) and per workflow task
    (scheduled → started, started → completed) in one run's history."""
    scheduled: dict[int, float] = {}
    started: dict[int, float] = {}
    out: dict[str, list[float]] = {
        "render_dispatch": [],
        "render_run": [],
        "wft_wait": [],
        "wft_run": [],
    }
    wft_scheduled = wft_started = None
    for event in events:
        kind, at = event.event_type, _time(event)
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == names.RENDER:
                scheduled[event.event_id] = at
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            event_id = event.activity_task_started_event_attributes.scheduled_event_id
            if event_id in scheduled:
                started[event_id] = at
                out["render_dispatch"].append(at - scheduled[event_id])
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            event_id = event.activity_task_completed_event_attributes.scheduled_event_id
            if event_id in started:
                out["render_run"].append(at - started[event_id])
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            wft_scheduled = at
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and wft_scheduled is not None:
            wft_started = at
            out["wft_wait"].append(at - wft_scheduled)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and wft_started is not None:
            out["wft_run"].append(at - wft_started)
    return out
