"""Who polls a task queue: the worker check of `status`/`watch`/`cancel` and the health check.

The server lists a poller for minutes after its worker stopped (`matching.PollerHistoryTTL`,
5 minutes), so a poller counts only while its last poll is recent enough to be a live long poll.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

WORKFLOW = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
ACTIVITY = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY

LONG_POLL = timedelta(minutes=1)
"""How long the server holds a poll that finds no task before it answers empty (Temporal's
`matching.longPollExpirationInterval`, 1 minute by default); an idle worker then polls again at
once. The server stamps a poller's last access when its poll arrives (measured on the dev
server: an idle worker's stamp ages to about 56 s, then starts again from 0)."""

LIVE_POLLER = LONG_POLL + timedelta(seconds=15)
"""A poller last seen longer ago than this has stopped: one long poll, plus 15 s for a re-poll
that a busy worker sends late and for clock skew between this host and the server (the stamp is
the server's clock, the age is taken with ours). A stopped worker so reads as gone 15-75 s after
it stopped, not after 5 minutes."""


def live_identities(
    pollers: Iterable[PollerInfo], now: datetime, live_within: timedelta = LIVE_POLLER
) -> set[str]:
    """Identities of the pollers whose last poll is at most `live_within` old at `now` (one
    without a stamp counts: nothing says it stopped)."""
    return {
        poller.identity
        for poller in pollers
        if not poller.HasField("last_access_time")
        or now - poller.last_access_time.ToDatetime(tzinfo=UTC) <= live_within
    }


async def poller_identities(
    client: Client, task_queue: str, kind: TaskQueueType.ValueType = ACTIVITY
) -> set[str]:
    """Identities of the workers polling `task_queue` for tasks of `kind` now (`LIVE_POLLER`)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=kind,
        ),
        timeout=timedelta(seconds=5),
    )
    return live_identities(response.pollers, datetime.now(UTC))


async def has_workers(client: Client, task_queue: str) -> bool:
    """Whether any worker polls `task_queue` for workflow tasks (it would run the job)."""
    return bool(await poller_identities(client, task_queue, WORKFLOW))


def no_worker_hint(task_queue: str) -> str:
    """What to tell a person whose job no worker serves."""
    return f"no worker polls task queue {task_queue!r} — start one with `varia worker`"
