"""`VariaJanitor`: one janitor sweep as a workflow, and the Temporal Schedule that runs it.

`varia server` and the compose admin step create the schedule `varia-janitor-<task queue>`
(every `VARIA_JANITOR_INTERVAL` seconds, overlapping runs skipped); `varia janitor` runs the
workflow once. The sweep itself is an activity, so it runs on a worker that sees the media.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from temporalio.client import (
        Client,
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleUpdate,
        ScheduleUpdateInput,
    )

    from varia import names
    from varia.janitor import JanitorActivities, JanitorReport, JanitorRequest


@workflow.defn(name=names.JANITOR_WORKFLOW)
class VariaJanitor:
    """Sweep closed jobs that ran no cleanup (terminated, timed out)."""

    @workflow.run
    async def run(self, request: JanitorRequest | None = None) -> JanitorReport:
        """One sweep; returns what was swept and what was left alone, and why."""
        return await workflow.execute_activity_method(
            JanitorActivities.sweep,
            request or JanitorRequest(),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary="clean up terminated and timed-out jobs",
        )


def schedule_id(task_queue: str) -> str:
    """The janitor schedule's id for one task queue."""
    return f"varia-janitor-{task_queue}"


def janitor_schedule(task_queue: str, interval_s: float) -> Schedule:
    """The schedule: start `VariaJanitor` every `interval_s` seconds, never two at once."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            names.JANITOR_WORKFLOW,
            JanitorRequest(),
            id=schedule_id(task_queue),
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval_s))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_janitor_schedule(
    client: Client, task_queue: str, interval_s: float, *, keep_existing: bool = False
) -> str:
    """Create the janitor schedule, or bring an existing one to this interval (unless
    `keep_existing`: a worker starting leaves an operator's schedule as it is); its id."""
    wanted = janitor_schedule(task_queue, interval_s)
    ident = schedule_id(task_queue)
    try:
        await client.create_schedule(ident, wanted)
    except ScheduleAlreadyRunningError:
        if keep_existing:
            return ident

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(ident).update(update)
    return ident


async def run_janitor_once(
    client: Client, task_queue: str, request: JanitorRequest | None = None
) -> JanitorReport:
    """Run one sweep now (on a worker of `task_queue`) and return its report."""
    stamp = secrets.token_hex(4)
    report: JanitorReport = await client.execute_workflow(
        names.JANITOR_WORKFLOW,
        request or JanitorRequest(),
        id=f"{schedule_id(task_queue)}-once-{stamp}",
        task_queue=task_queue,
        result_type=JanitorReport,
    )
    return report
