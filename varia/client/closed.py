"""What a closed job left, read from Temporal and the disk (no worker needed).

The run's close event gives how it ended: the result object (completed, and a failed job's
error details) or the failure's message. A completed or failed job's directory is the one its
result names (a failed job without a result made none: its output_dir was unusable, or its id
belonged to an earlier execution). A cancelled, terminated or timed-out run does not say;
`Jobs` then asks the job (`progress`), else reads the run's first events (`from_history`):
`<output_dir>/<job id>` and the total from its request, and whether it began at all.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistoryEventFilterType

from varia.client.status import ClosedFacts, RunView
from varia.models import JobResult
from varia.names import MANIFEST_NAME

CLOSE_STATUSES: dict[EventType.ValueType, WorkflowExecutionStatus] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: WorkflowExecutionStatus.COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: WorkflowExecutionStatus.FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: WorkflowExecutionStatus.CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: WorkflowExecutionStatus.TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: WorkflowExecutionStatus.TIMED_OUT,
}
"""Close event type → how the run ended (continue-as-new is not an end)."""


async def close_event(
    client: Client, job_id: str, run_id: str | None = None, *, wait: bool
) -> HistoryEvent | None:
    """The close event of the job's run, following continue-as-new; with `wait`, block until
    there is one, else None while it runs. RPC errors propagate."""
    while True:
        handle = client.get_workflow_handle(job_id, run_id=run_id)
        found: HistoryEvent | None = None
        async for event in handle.fetch_history_events(
            wait_new_event=wait, event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
        ):
            found = event
            break
        if found is None or found.event_type in CLOSE_STATUSES:
            return found
        run_id = found.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


async def closed_facts(client: Client, view: RunView, close: HistoryEvent | None) -> ClosedFacts:
    """Result or failure from the close event; job dir and manifest from the disk."""
    close = close or await close_event(client, view.job_id, view.run_id, wait=False)
    result, error = await _result_and_error(client, close) if close else (None, None)
    settled = close is not None and close.event_type in (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    )
    facts = ClosedFacts(varia_state=result.state if result else None, error=error, settled=settled)
    return with_job_dir(facts, result.job_dir if result else None, view.run_id)


def with_job_dir(facts: ClosedFacts, job_dir: str | None, run_id: str | None) -> ClosedFacts:
    """The facts with the job directory and what its manifest says, if it was written for run
    `run_id` (the latest of the job): a manifest naming an earlier run (a reset run, then
    terminated, before the janitor swept it) is not this run's."""
    manifest_path, manifest = _read_manifest(job_dir)
    if run_id is not None and manifest is not None and manifest.get("run_id") not in (None, run_id):
        manifest_path, manifest = None, None
    return replace(facts, job_dir=job_dir, manifest_path=manifest_path, manifest=manifest)


async def _result_and_error(
    client: Client, close: HistoryEvent
) -> tuple[JobResult | None, str | None]:
    converter = client.data_converter
    if close.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        payloads = list(close.workflow_execution_completed_event_attributes.result.payloads)
        raw = (await converter.decode(payloads[:1]))[0] if payloads else None
        return _job_result(raw), None
    if close.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure = close.workflow_execution_failed_event_attributes.failure
        details = list(failure.application_failure_info.details.payloads)
        raw = (await converter.decode(details[:1]))[0] if details else None
        return _job_result(raw), failure.message
    return None, None


EARLY_EVENTS = 20
"""History events read for `from_history`: a run that began schedules its prepare within its
first ten or so (started, workflow task, a local activity's marker, then the prepare)."""


async def from_history(client: Client, view: RunView, facts: ClosedFacts) -> ClosedFacts:
    """The facts, completed from the run's first events when neither the close event nor the
    job says: the job dir `<output_dir>/<job id>` and the total from the request, and whether
    the run began (a continued run, or one that scheduled an activity); one that never did
    rendered nothing."""
    handle = client.get_workflow_handle(view.job_id, run_id=view.run_id)
    events: list[HistoryEvent] = []
    async for event in handle.fetch_history_events(page_size=EARLY_EVENTS):
        events.append(event)
        if len(events) == EARLY_EVENTS:
            break
    if not events:
        return with_job_dir(facts, None, view.run_id)
    request = _request(list(events[0].workflow_execution_started_event_attributes.input.payloads))
    output_dir = request.get("output_dir")
    job_dir = str(Path(output_dir) / view.job_id) if isinstance(output_dir, str) else None
    return replace(
        with_job_dir(facts, job_dir, view.run_id), total=_total(request), began=_began(events)
    )


def _began(events: list[HistoryEvent]) -> bool:
    """Whether a run began: it continues an earlier one, it scheduled an activity, or it has
    more events than were read (not known: counted as begun)."""
    started = events[0].workflow_execution_started_event_attributes
    return (
        bool(started.continued_execution_run_id)
        or len(events) == EARLY_EVENTS
        or any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in events)
    )


def _request(payloads: list[Payload]) -> dict[str, Any]:
    try:
        request = json.loads(payloads[0].data) if payloads else None
    except ValueError:
        return {}
    return request if isinstance(request, dict) else {}


def _total(request: dict[str, Any]) -> int | None:
    inputs, variations = request.get("inputs"), request.get("variations")
    if isinstance(inputs, list) and isinstance(variations, int):
        return len(inputs) * variations
    return None


def _job_result(raw: Any) -> JobResult | None:
    if not isinstance(raw, dict):
        return None
    try:
        return JobResult.model_validate(raw)
    except ValueError:
        return None


def _read_manifest(job_dir: str | None) -> tuple[str | None, dict[str, Any] | None]:
    if not job_dir:
        return None, None
    path = Path(job_dir) / MANIFEST_NAME
    try:
        return str(path), json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None
