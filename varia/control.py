"""Stopping jobs from a client: cancel and drain, optionally waiting until the job closed.

Cancel follows the contract: a job that already closed is reported as it ended (no error);
otherwise the cancel is requested and, when waiting, the outcome is what the job closed as:
`cancelled` with the variations it kept, or `completed` when completion won the race.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError

from varia.config import Settings
from varia.jobinfo import JobStatus, describe_job, has_workers, job_status, rpc_problem
from varia.models import Progress

Notify = Callable[[str], None]


class StopOutcome(BaseModel):
    """What `varia cancel` / `varia drain` report."""

    job_id: str
    action: str
    requested: bool
    already_closed: bool
    waited: bool
    state: str
    total: int | None = None
    kept: int | None = None
    failed: int | None = None
    closed_at: datetime | None = None
    job_dir: str | None = None
    manifest: str | None = None


def _outcome(action: str, status: JobStatus, *, requested: bool, already: bool) -> StopOutcome:
    return StopOutcome(
        job_id=status.job_id,
        action=action,
        requested=requested,
        already_closed=already,
        waited=status.closed and not already,
        state=status.state,
        total=status.total,
        kept=status.outputs if status.outputs is not None else status.completed,
        failed=status.failed,
        closed_at=status.closed_at,
        job_dir=status.job_dir,
        manifest=status.manifest,
    )


async def wait_closed(
    client: Client, settings: Settings, job_id: str, notify: Notify | None = None
) -> JobStatus:
    """Wait until the job (following continue-as-new) has closed; then its status."""
    description = await describe_job(client, settings, job_id)
    if notify and not await has_workers(client, settings, description.task_queue):
        notify(
            f"no worker polls task queue {description.task_queue!r}: the job closes when one "
            "does (Ctrl-C stops waiting; what was requested stays requested)"
        )
    handle = client.get_workflow_handle(job_id)
    try:
        await handle.result()
    except RPCError as err:
        raise rpc_problem(err, job_id, settings) from None
    except Exception:  # the job failed, was cancelled or terminated: its status says which
        pass
    return await job_status(client, settings, job_id)


async def _already_closed(
    kind: str,
    client: Client,
    settings: Settings,
    job_id: str,
    description: WorkflowExecutionDescription | None = None,
) -> StopOutcome | None:
    """How the job ended, if it is no longer running (nothing is requested then)."""
    description = description or await describe_job(client, settings, job_id)
    if description.status == WorkflowExecutionStatus.RUNNING:
        return None
    status = await job_status(client, settings, job_id)
    return _outcome(kind, status, requested=False, already=True)


async def cancel_job(
    client: Client,
    settings: Settings,
    job_id: str,
    *,
    wait: bool = True,
    notify: Notify | None = None,
) -> StopOutcome:
    """Request a cancel (unless the job already closed) and, if `wait`, report how it closed."""
    if (closed := await _already_closed("cancel", client, settings, job_id)) is not None:
        return closed
    try:
        await client.get_workflow_handle(job_id).cancel()
    except RPCError as err:
        problem = rpc_problem(err, job_id, settings)
        if problem is not err:
            raise problem from None
        # it closed between describe and cancel: report how
    return await _report("cancel", client, settings, job_id, True, wait, notify)


async def drain_job(
    client: Client,
    settings: Settings,
    job_id: str,
    *,
    wait: bool = True,
    notify: Notify | None = None,
) -> StopOutcome:
    """Ask the job to start no new variations; if `wait`, report how it closed."""
    description = await describe_job(client, settings, job_id)
    if (
        closed := await _already_closed("drain", client, settings, job_id, description)
    ) is not None:
        return closed
    if notify and not await has_workers(client, settings, description.task_queue):
        notify(f"no worker polls task queue {description.task_queue!r}: waiting for one")
    requested = True
    try:
        await client.get_workflow_handle(job_id).execute_update("drain", result_type=Progress)
    except WorkflowUpdateFailedError:
        requested = False  # rejected: the job is already finishing; report how it ends
    except RPCError as err:
        raise rpc_problem(err, job_id, settings) from None
    return await _report("drain", client, settings, job_id, requested, wait, None)


async def _report(
    kind: str,
    client: Client,
    settings: Settings,
    job_id: str,
    requested: bool,
    wait: bool,
    notify: Notify | None,
) -> StopOutcome:
    """How the job stands now, or (with `wait`) how it closed."""
    if wait:
        status = await wait_closed(client, settings, job_id, notify)
    else:
        status = await job_status(client, settings, job_id)
    return _outcome(kind, status, requested=requested, already=False)


class NotPausable(Exception):
    """The job refused a pause or resume; the message says why (its state)."""


async def _update(client: Client, settings: Settings, job_id: str, name: str) -> JobStatus:
    description = await describe_job(client, settings, job_id)
    if description.status != WorkflowExecutionStatus.RUNNING:
        status = await job_status(client, settings, job_id)
        raise NotPausable(f"job {job_id} is {status.state}; there is nothing to {name}")
    try:
        await client.get_workflow_handle(job_id).execute_update(name, result_type=Progress)
    except WorkflowUpdateFailedError as err:
        reason = err.cause.message if hasattr(err.cause, "message") else str(err.cause)
        raise NotPausable(f"job {job_id}: {reason}") from None
    except RPCError as err:
        raise rpc_problem(err, job_id, settings) from None
    return await job_status(client, settings, job_id)


async def pause_job(client: Client, settings: Settings, job_id: str) -> JobStatus:
    """Pause a job: returns once its renders stopped and it waits in state `paused`."""
    return await _update(client, settings, job_id, "pause")


async def resume_job(client: Client, settings: Settings, job_id: str) -> JobStatus:
    """Resume a paused job where it stopped."""
    return await _update(client, settings, job_id, "resume")
