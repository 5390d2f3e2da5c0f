"""Who polls a task queue: the worker check of `status`/`watch`/`cancel` and the health check."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

WORKFLOW = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
ACTIVITY = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY


async def poller_identities(
    client: Client, task_queue: str, kind: TaskQueueType.ValueType = ACTIVITY
) -> set[str]:
    """Identities of the workers recently polling `task_queue` for tasks of `kind`."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=kind,
        ),
        timeout=timedelta(seconds=5),
    )
    return {poller.identity for poller in response.pollers}


async def has_workers(client: Client, task_queue: str) -> bool:
    """Whether any worker polls `task_queue` for workflow tasks (it would run the job)."""
    return bool(await poller_identities(client, task_queue, WORKFLOW))


def no_worker_hint(task_queue: str) -> str:
    """What to tell a person whose job no worker serves."""
    return f"no worker polls task queue {task_queue!r} — start one with `varia worker`"
