"""Pushed cancels: a cancelled job's renders stop FFmpeg at once, not at their next heartbeat.

Each worker process polls a task queue of its own (`<queue>-stop-<token>`) and names it in its
renders' heartbeat details. On cancel the workflow reads those queues from its pending renders
(a local activity that describes the run) and schedules `varia.stop_renders` on each; that
activity sets the stop event of each named render running in its process, which stops FFmpeg
and ends the attempt with a non-retryable `StoppedForCancel` error the workflow counts as a
cancellation. The SDK's heartbeat-borne cancellation stays the fallback: a push that is lost
(no such worker, queue not polled) delays a cancel by at most the heartbeat throttle, never
loses it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
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


def stop_queue_name(task_queue: str) -> str:
    """A task queue unique to this worker process, derived from the job queue's name."""
    return f"{task_queue}-stop-{secrets.token_hex(6)}"


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


UNNAMED_WAIT_S = 0.5
"""How long the cancel path re-reads the run while a started render has not named its stop
queue yet (it names it in the heartbeat it sends as FFmpeg starts, a few ms after its start)."""
UNNAMED_POLL_S = 0.02


async def render_stop_queues(
    client: Client,
    workflow_id: str,
    run_id: str,
    *,
    wait_s: float = UNNAMED_WAIT_S,
    poll_s: float = UNNAMED_POLL_S,
) -> dict[str, list[str]]:
    """The stop queue of each pending render of a run, from its last heartbeat details:
    {queue: [activity ids]}.

    A render that started but has not named a queue yet (a cancel that lands in its first
    milliseconds) is waited for, re-reading the run every `poll_s` for up to `wait_s`; one
    that names none by then (a worker with pushes off) is left to the heartbeat fallback.
    """
    deadline = time.monotonic() + wait_s
    while True:
        queues, unnamed = await _read_stop_queues(client, workflow_id, run_id)
        if not unnamed or time.monotonic() >= deadline:
            return queues
        await asyncio.sleep(poll_s)


async def _read_stop_queues(
    client: Client, workflow_id: str, run_id: str
) -> tuple[dict[str, list[str]], int]:
    """({queue: [activity ids]}, how many started renders named no queue) of one describe."""
    description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    queues: dict[str, list[str]] = {}
    unnamed = 0
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name != RENDER_ACTIVITY or pending.state not in _PENDING:
            continue
        payloads = list(pending.heartbeat_details.payloads)
        details = None
        if payloads:
            [details] = await client.data_converter.decode(payloads[-1:], [RenderHeartbeat])
        if details is not None and details.stop_queue:
            queues.setdefault(details.stop_queue, []).append(pending.activity_id)
        else:
            unnamed += 1
    return queues, unnamed
