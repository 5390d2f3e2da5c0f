"""What a client can learn about jobs: one job's status, recent jobs, Web UI links.

Prefers the live `progress` query; when no worker answers it, falls back to the workflow's
description, varia's search attributes and the manifest, so a status never hangs on a worker.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from varia.client import connect
from varia.config import Settings
from varia.models import FINAL_STATES, Progress
from varia.search_attributes import VARIA_COMPLETED, VARIA_PERCENT, VARIA_STATE, VARIA_TOTAL

WORKFLOW_TYPE = "VariationJob"
"""The workflow type of the contract (not imported from the workflow: keeps the CLI quick)."""

QUERY_TIMEOUT = timedelta(seconds=2)
"""How long a `progress` query may wait for a worker before status falls back."""

STATUS_STATES: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}
UNSUCCESSFUL_STATES = frozenset({"failed", "cancelled", "terminated", "timed_out"})
"""Final states for which following a job ends with exit code 1."""


class JobNotFound(Exception):
    """No job with this id exists in the namespace."""


class ServerUnreachable(Exception):
    """The Temporal server did not answer; the message names the address."""


class JobStatus(BaseModel):
    """A job as `varia status`, `varia watch` and `varia list` show it."""

    job_id: str
    state: str
    closed: bool
    total: int | None = None
    completed: int | None = None
    failed: int | None = None
    running: int | None = None
    percent: float | None = None
    outputs: int | None = Field(default=None, description="Outputs kept (from the manifest).")
    job_dir: str | None = None
    manifest: str | None = None
    task_queue: str | None = None
    started: datetime | None = None
    closed_at: datetime | None = None
    draining: bool = False
    cancel_requested: bool = False
    running_variations: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    live: bool = Field(default=False, description="Counts come from the progress query.")
    ui_url: str | None = None


async def open_client(settings: Settings) -> Client:
    """Connect, turning a connection failure into `ServerUnreachable`."""
    try:
        return await connect(settings)
    except RuntimeError as err:
        reason = str(err).split("Os {")[-1] if "Os {" in str(err) else str(err)
        raise ServerUnreachable(
            f"cannot reach Temporal at {settings.temporal_address}: {_short(reason)}"
        ) from None


def _short(reason: str) -> str:
    for known in ("Connection refused", "timed out", "No route to host", "Name or service"):
        if known.lower() in reason.lower():
            return known.lower()
    return reason.strip()[:200]


def ui_base_url(settings: Settings) -> str:
    """The Web UI's base URL: `VARIA_UI_URL`, else the gRPC host with port + 1000."""
    if settings.ui_url:
        return settings.ui_url.rstrip("/")
    parts = urlsplit(f"//{settings.temporal_address}")
    host = parts.hostname or "localhost"
    port = (parts.port or 7233) + 1000
    return f"http://{host}:{port}"


def ui_link(settings: Settings, job_id: str) -> str:
    """The job's page in the Temporal Web UI."""
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{ui_base_url(settings)}/namespaces/{namespace}/workflows/{quote(job_id, safe='')}"


def rpc_problem(err: RPCError, job_id: str, settings: Settings) -> Exception:
    """The varia error an RPC failure stands for (not found, unreachable, or itself)."""
    if err.status == RPCStatusCode.NOT_FOUND and "namespace" not in err.message.lower():
        return JobNotFound(f"no job {job_id!r} in namespace {settings.temporal_namespace!r}")
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return ServerUnreachable(
            f"Temporal at {settings.temporal_address} did not answer: {err.message}"
        )
    return err


async def describe_job(
    client: Client, settings: Settings, job_id: str
) -> WorkflowExecutionDescription:
    """Describe the job's latest run; raise `JobNotFound` or `ServerUnreachable`."""
    try:
        return await client.get_workflow_handle(job_id).describe()
    except RPCError as err:
        raise rpc_problem(err, job_id, settings) from None


async def query_progress(client: Client, job_id: str) -> Progress | None:
    """The `progress` query, or None when no worker answers it in time."""
    try:
        progress: Progress = await client.get_workflow_handle(job_id).query(
            "progress", result_type=Progress, rpc_timeout=QUERY_TIMEOUT
        )
        return progress
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        return None


async def has_workers(client: Client, settings: Settings, task_queue: str) -> bool:
    """Whether any worker polls the task queue for workflow tasks."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return bool(response.pollers)


def _attributes(attrs: TypedSearchAttributes) -> tuple[str | None, int | None, int | None]:
    return attrs.get(VARIA_STATE), attrs.get(VARIA_COMPLETED), attrs.get(VARIA_TOTAL)


def _state(status: WorkflowExecutionStatus | None, varia_state: str | None) -> str:
    """The job state: varia's own word when it agrees with Temporal's status."""
    closed_as = STATUS_STATES.get(status, "unknown") if status else "unknown"
    if status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
        return varia_state if varia_state and varia_state not in FINAL_STATES else closed_as
    if closed_as == "completed" and varia_state in ("completed", "drained"):
        return varia_state
    return closed_as


def _read_manifest(job_dir: str | None) -> tuple[str | None, dict[str, Any] | None]:
    if not job_dir:
        return None, None
    path = Path(job_dir) / "manifest.json"
    try:
        return str(path), json.loads(path.read_text())
    except (OSError, ValueError):
        return None, None


async def _job_dir_from_input(client: Client, job_id: str) -> str | None:
    """`<output_dir>/<job id>` from the request in the job's first history event."""
    try:
        async for event in client.get_workflow_handle(job_id).fetch_history_events():
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            if payloads:
                request = json.loads(payloads[0].data)
                if isinstance(request, dict) and isinstance(request.get("output_dir"), str):
                    return str(Path(request["output_dir"]) / job_id)
            return None
    except (RPCError, ValueError):
        return None
    return None


async def job_status(client: Client, settings: Settings, job_id: str) -> JobStatus:
    """Everything known about one job; raise `JobNotFound` or `ServerUnreachable`."""
    description = await describe_job(client, settings, job_id)
    closed = description.status not in (WorkflowExecutionStatus.RUNNING, None)
    progress = await query_progress(client, job_id)
    varia_state, completed, total = _attributes(description.typed_search_attributes)
    status = JobStatus(
        job_id=job_id,
        state=_state(description.status, progress.state if progress else varia_state),
        closed=closed,
        total=total,
        completed=completed,
        task_queue=description.task_queue,
        started=description.start_time,
        closed_at=description.close_time,
        ui_url=ui_link(settings, job_id),
    )
    if progress is not None:
        status.live = True
        status.total, status.completed, status.failed = (
            progress.total,
            progress.completed,
            progress.failed,
        )
        status.running, status.percent = progress.running, progress.percent
        status.job_dir, status.draining = progress.job_dir, progress.draining
        status.cancel_requested, status.errors = progress.cancel_requested, progress.errors
        status.running_variations = [r.output for r in progress.running_variations]
    if status.job_dir is None and closed and progress is None:
        # Only when the job cannot say: a job that answers with no job_dir made none (say,
        # its output_dir was unusable, or the directory belongs to an earlier execution).
        status.job_dir = await _job_dir_from_input(client, job_id)
    if closed:
        status.running = 0
        status.manifest, manifest = _read_manifest(status.job_dir)
        if manifest is not None:
            status.outputs = len(manifest.get("outputs", []))
            status.total = manifest.get("total", status.total)
            status.completed = manifest.get("completed", status.completed)
            status.failed = manifest.get("failed", status.failed)
    if status.percent is None and status.total:
        done = (status.completed or 0) + (status.failed or 0)
        status.percent = round(100.0 * done / status.total, 1)
    return status


LIST_SCAN_LIMIT = 500
"""Jobs scanned when a state filter must be applied without search attributes."""

STATE_QUERIES: dict[str, str] = {
    "completed": "ExecutionStatus = 'Completed'",
    "failed": "ExecutionStatus = 'Failed'",
    "cancelled": "ExecutionStatus = 'Canceled'",
    "terminated": "ExecutionStatus = 'Terminated'",
    "timed_out": "ExecutionStatus = 'TimedOut'",
}


def list_query(state: str | None, with_attributes: bool) -> str:
    """The visibility query of `varia list` (latest run of each VariationJob)."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus != 'ContinuedAsNew'"
    if state is None:
        return query
    by_status = STATE_QUERIES.get(state)
    by_attribute = f"VariaState = '{state}'" if with_attributes else None
    if by_status and by_attribute and state != "completed":
        return f"{query} AND ({by_attribute} OR {by_status})"
    if by_attribute:
        return f"{query} AND {by_attribute}"
    if by_status:
        return f"{query} AND {by_status}"
    return f"{query} AND ExecutionStatus = 'Running'"


async def _list_row(client: Client, settings: Settings, execution: WorkflowExecution) -> JobStatus:
    varia_state, completed, total = _attributes(execution.typed_search_attributes)
    closed = execution.status != WorkflowExecutionStatus.RUNNING
    row = JobStatus(
        job_id=execution.id,
        state=_state(execution.status, varia_state),
        closed=closed,
        total=total,
        completed=completed,
        task_queue=execution.task_queue,
        started=execution.start_time,
        closed_at=execution.close_time,
        ui_url=ui_link(settings, execution.id),
    )
    progress = None
    if total is None and not closed:
        progress = await query_progress(client, execution.id)
        if progress is not None:
            row.state, row.total, row.completed = progress.state, progress.total, progress.completed
            row.failed, row.running, row.live = progress.failed, progress.running, True
    row.percent = execution.typed_search_attributes.get(VARIA_PERCENT)
    if row.live and progress is not None:
        row.percent = progress.percent
    if row.percent is None and row.total:
        row.percent = round(100.0 * (row.completed or 0) / row.total, 1)
    return row


async def list_jobs(
    client: Client,
    settings: Settings,
    *,
    state: str | None = None,
    limit: int = 20,
    with_attributes: bool = True,
) -> list[JobStatus]:
    """Recent jobs, newest first, optionally only those in `state`."""
    query = list_query(state, with_attributes)
    fetch = limit if state is None or with_attributes else LIST_SCAN_LIMIT
    try:
        executions = [e async for e in client.list_workflows(query, limit=fetch)]
    except RPCError as err:
        raise rpc_problem(err, "", settings) from None
    executions.sort(key=lambda e: e.start_time, reverse=True)
    rows = list(await asyncio.gather(*(_list_row(client, settings, e) for e in executions)))
    if state is not None:
        rows = [row for row in rows if row.state == state]
    return rows[:limit]
