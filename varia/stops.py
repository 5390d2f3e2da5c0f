"""Pushed cancels: a cancelled job's renders stop FFmpeg at once, not at their next heartbeat.

Each worker process polls a task queue of its own, `<queue>-stop-<digest of its identity>`.
On cancel the workflow reads each pending render's worker identity (the server records it
when the attempt starts) and so its queue (a local activity that describes the run), and
schedules `varia.stop_renders` on each; that activity sets the stop event of each named
render running in its process, which stops FFmpeg and ends the attempt with a non-retryable
`StoppedForCancel` error the workflow counts as a cancellation. No heartbeat is needed to
name the queue, so a render heartbeats only every half throttle from its start, and a cancel
in its first moments is pushed too. A render's heartbeat details still name its queue
(`stop_queue`), which wins (workers of older varia named a random queue there).
The SDK's heartbeat-borne cancellation stays the fallback: a push that is lost (no such
worker, queue not polled, two workers sharing one identity) delays a cancel by at most the
heartbeat throttle, never loses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from varia import names
from varia.models import RenderHeartbeat

RENDER_ACTIVITY = names.RENDER
_PENDING = (
    PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
    PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED,
)

RunKey = tuple[str, str, str]
"""(workflow id, run id, activity id) of one render attempt."""


def stop_queue_name(task_queue: str, identity: str) -> str:
    """The stop queue of the worker process with `identity` that polls `task_queue` (the
    job's queue): anyone who knows a render's worker identity can name it."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"{task_queue}-stop-{digest}"


def default_identity() -> str:
    """The SDK's default worker identity, `<pid>@<hostname>`: distinct per process."""
    return f"{os.getpid()}@{socket.gethostname()}"


class RenderRegistry:
    """The renders running in this process, each with the event that stops its FFmpeg."""

    def __init__(self) -> None:
        self._running: dict[RunKey, asyncio.Event] = {}

    @contextmanager
    def running(self, workflow_id: str, run_id: str, activity_id: str) -> Iterator[asyncio.Event]:
        """Register a render for the time it runs; yields its stop event."""
        key, event = (workflow_id, run_id, activity_id), asyncio.Event()
        self._running[key] = event
        try:
            yield event
        finally:
            if self._running.get(key) is event:
                del self._running[key]

    def stop(self, workflow_id: str, run_id: str, activity_ids: list[str]) -> list[str]:
        """Set the stop event of each named render running here; returns the ids found."""
        found = []
        for activity_id in activity_ids:
            event = self._running.get((workflow_id, run_id, activity_id))
            if event is not None:
                event.set()
                found.append(activity_id)
        return found

    def __len__(self) -> int:
        return len(self._running)


async def render_stop_queues(
    client: Client, task_queue: str, workflow_id: str, run_id: str
) -> dict[str, list[str]]:
    """The stop queue of each started render of a run: {queue: [activity ids]}.

    A render's queue is the one its heartbeat details name (none: its worker has pushes
    off), else, before its first heartbeat, the one its worker identity gives
    (`stop_queue_name` with the job's `task_queue`).
    """
    description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    queues: dict[str, list[str]] = {}
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name != RENDER_ACTIVITY or pending.state not in _PENDING:
            continue
        payloads = list(pending.heartbeat_details.payloads)
        details = None
        if payloads:
            [details] = await client.data_converter.decode(payloads[-1:], [RenderHeartbeat])
        if details is not None:  # None there: that worker polls no stop queue
            queue = details.stop_queue
        elif pending.last_worker_identity:
            queue = stop_queue_name(task_queue, pending.last_worker_identity)
        else:
            queue = None
        if queue:
            queues.setdefault(queue, []).append(pending.activity_id)
    return queues
