"""Run a step to its end although a cancel arrives: one helper per side (activity, workflow).

Why (measured here, see DESIGN.md): a cancel arrives as one `CancelledError` at whatever
`await` is current. Some steps must not be cut off by it:
- stopping FFmpeg: a stop abandoned half-way leaves FFmpeg running or SIGKILLed (an MP4
  without its `moov` box); the render keeps heartbeating while the stop lasts;
- putting a checked output into place: abandoned, a whole output would be lost;
- the workflow's prepare and cleanup: a cancel that lands in the same workflow task as the
  activity's completion raises `CancelledError` in place of the result, and the job dir
  would get no manifest; a render that finished while the cancel was in flight is kept
  (completion wins).
Each helper awaits the step behind `asyncio.shield` and, on a cancel, goes on awaiting it;
the cancel is not re-raised here (the task stays `cancelling()`, see
`raise_if_cancel_requested`). No helper uses `asyncio.wait_for`: on Python 3.11 it swallows a
cancel that arrives while its inner future is already done (400 of 400 in a ready read loop).

The workflow side reads no clock and starts no timer (an `asyncio.timeout` there would be a
workflow timer, a new command); only the activity side ticks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# ---- activity side -----------------------------------------------------------------------


async def run_to_end(
    step: Awaitable[T],
    *,
    keep_alive: Callable[[], None] | None = None,
    tick_s: float = 1.0,
) -> T:
    """Await `step` to its end even if cancellations arrive meanwhile; return its result.

    `keep_alive` is called every `tick_s` while it lasts (a render heartbeats, so a slow
    stop is not taken for a dead worker).
    """
    task = asyncio.ensure_future(step)
    while True:
        try:
            if keep_alive is None:
                return await asyncio.shield(task)
            async with asyncio.timeout(tick_s):
                return await asyncio.shield(task)
        except TimeoutError:
            if task.done():  # the step's own TimeoutError
                return task.result()
            assert keep_alive is not None
            keep_alive()
        except asyncio.CancelledError:
            if task.done():
                return task.result()


# ---- workflow side (deterministic: no clock, no timer) -----------------------------------


async def run_to_end_in_workflow(
    step: Awaitable[T], on_cancel: Callable[[], None] = lambda: None
) -> T:
    """Await a workflow step (an activity) to its end although the workflow is cancelled;
    `on_cancel` runs in the task that received each cancel (query consistency)."""
    task = asyncio.ensure_future(step)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            on_cancel()
            if task.done():
                return task.result()


async def completion_wins(handle: asyncio.Task[T]) -> T:
    """Await an activity; on cancel, cancel it (it stops), but return its result if it
    finished anyway.

    Cancelling the activity handle itself would raise `CancelledError` when its completion
    arrives in the same workflow task as the cancel, and the finished output would be deleted.
    """
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        await asyncio.sleep(0)  # let a completion that arrived with the cancel resolve it
        if not handle.done():
            handle.cancel()
        return await handle


def raise_if_cancel_requested() -> None:
    """Re-raise a cancel that an awaited step absorbed.

    An activity with WAIT_CANCELLATION_COMPLETED that completes after the workflow was
    cancelled returns its result, and a cancelled local activity raises an `ActivityError`
    that may be handled: either way the workflow task's cancel request would be lost.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()
