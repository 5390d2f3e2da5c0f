"""`VariationJob`'s activity options, and the one call it makes that needs none of its state:
the pushed stop. Workflow code: deterministic, no I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from varia.activities import JobActivities
    from varia.errors import NON_RETRYABLE_TYPES
    from varia.models import JobRequest, RunRef, StopRenders

RENDER_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
LIGHT_HEARTBEAT_TIMEOUT = timedelta(seconds=15)
"""Prepare, record, discard and cleanup heartbeat in the background while they work: a worker
that dies in one of them is noticed within this, not at the step's start-to-close (minutes)."""
RENDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=list(NON_RETRYABLE_TYPES),
)
IO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=list(NON_RETRYABLE_TYPES),
)
WAIT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
TRY_CANCEL = workflow.ActivityCancellationType.TRY_CANCEL
PUSH_TIMEOUT = timedelta(seconds=10)
ONCE = RetryPolicy(maximum_attempts=1)
LOCAL_STEP_TIMEOUT = timedelta(minutes=10)
"""Prepare's and cleanup's start-to-close as local activities (patch "local-edges"); their
workflow task's own timeout is what notices a worker that died in one."""

T = TypeVar("T")


async def local_step(step: Awaitable[T], activity_type: str) -> T:
    """Await a local activity; a failure is raised as the `ActivityError` an activity's would be.

    The SDK raises a local activity's failure bare (its `ApplicationError`, a timeout), while
    the workflow reads every step's failure from `ActivityError.cause` (its type, its own
    message, the job directory in its details): unwrapped, a local prepare's `BadInput`
    escaped as the workflow's failure and skipped the cleanup of the directory prepare made.
    """
    try:
        return await step
    except ActivityError:
        raise
    except FailureError as err:
        raise ActivityError(
            "Local activity failed",
            scheduled_event_id=0,
            started_event_id=0,
            identity="",
            activity_type=activity_type,
            activity_id="",
            retry_state=None,
        ) from err


def render_priority(job: JobRequest, job_id: str, on: bool) -> Priority:
    """The renders' task priority and fairness key (default: the job id; trimmed to 64 bytes)."""
    if not on:
        return Priority.default
    key = (job.fairness_key or job_id).encode()[:64].decode(errors="ignore")
    return Priority(priority_key=job.priority, fairness_key=key)


async def push_stop(
    only: set[str] | None = None, why: str = "cancel"
) -> list[asyncio.Task[list[str]]]:
    """Push the cancel to the workers running this run's renders (best effort); `only`: to
    these render activity ids alone; `why` names the reason in its summary (cancel, pause,
    drain). Returns the pushes: each ends with the ids its worker
    found running (`push_missed_again` reads them).

    A local activity reads each pending render's stop queue (from its worker identity, or its
    heartbeat details); a `stop_renders` activity on each queue stops FFmpeg at once. Nothing
    has to wait for them: if one is lost, the heartbeat-borne cancel still arrives.
    """
    info = workflow.info()
    try:
        queues = await workflow.execute_local_activity_method(
            JobActivities.render_stop_queues,
            RunRef(workflow_id=info.workflow_id, run_id=info.run_id),
            start_to_close_timeout=PUSH_TIMEOUT,
            retry_policy=ONCE,
        )
    except ActivityError:
        return []
    pushes: list[asyncio.Task[list[str]]] = []
    for queue, all_ids in sorted(queues.items()):
        activity_ids = [i for i in all_ids if only is None or i in only]
        if not activity_ids:
            continue
        pushed = workflow.start_activity_method(
            JobActivities.stop_renders,
            StopRenders(
                workflow_id=info.workflow_id, run_id=info.run_id, activity_ids=activity_ids
            ),
            task_queue=queue,
            schedule_to_close_timeout=PUSH_TIMEOUT,
            retry_policy=ONCE,
            cancellation_type=workflow.ActivityCancellationType.ABANDON,
            summary=f"stop {', '.join(activity_ids)} at once ({why})",
        )
        pushed.add_done_callback(_ignore_outcome)
        pushes.append(pushed)
    return pushes


async def push_missed_again(
    pushes: list[asyncio.Task[list[str]]], still_running: Callable[[], set[str]]
) -> None:
    """Once every push has replied, push again, once, to the renders still running that no
    push found: they were not yet running on their worker when it arrived (dispatched just
    before the cancel, or pending without a worker when the stop queues were read). Now that
    the cancel is recorded none can start, so the second read names all their queues. A lost
    push ends this: the heartbeat path delivers the cancel."""
    found: set[str] = set()
    for push in pushes:
        try:
            found.update(await push)
        except ActivityError:
            return
    missed = still_running() - found
    if missed:
        await push_stop(missed)


def _ignore_outcome(task: asyncio.Task[Any]) -> None:
    """Retrieve a push's outcome so a lost push logs nothing: the fallback covers it."""
    if not task.cancelled():
        task.exception()
