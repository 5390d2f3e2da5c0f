"""A render's turn to run FFmpeg: its job slot (render-ahead), then one of the worker's FFmpeg
permits, both released the moment FFmpeg exits.

A render that waits for its turn heartbeats every `WAITING_BEAT_S` (`waiting_for_slot`: what the
operator sees; a pushed cancel finds it by its worker identity from the start) and stops
waiting on a pushed stop, a cancel or a worker shutdown, as a running render stops its FFmpeg
on them. A job directory that is gone by the time FFmpeg would start fails the render with
`JobDirGone` instead: FFmpeg never starts for a job that can keep nothing. Nor for an input
that changed while the render waited (`BadInput`): it would render a file the job never probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from varia import errors, media, metrics
from varia.job_slots import JobSlots, Release
from varia.jobdir import job_dir_gone
from varia.models import RenderHeartbeat, RenderTask
from varia.recipes import recipe_summary
from varia.render_capacity import RenderCapacity
from varia.render_output import cleanup_follows, workflow_gone

WAITING_BEAT_S = 3.0
"""Heartbeats of a waiting render: well inside the render heartbeat timeout (10 s)."""


def refuse_if_input_changed(task: RenderTask) -> None:
    """Fail the render (`BadInput`, not retried) if its input is no longer the file the job
    probed (`media.check_unchanged`)."""
    try:
        media.check_unchanged(task.media)
    except media.MediaError as err:
        reason = str(err).removeprefix(f"input {task.media.path!r} ")  # named once, below
        raise errors.bad_input(f"{task.media.path} variation {task.variation}: {reason}") from None


@contextlib.asynccontextmanager
async def ffmpeg_turn(
    task: RenderTask,
    capacity: RenderCapacity,
    slots: JobSlots,
    pushed: asyncio.Event,
    stop_queue: str | None,
    label: str,
) -> AsyncIterator[None]:
    """Hold the task's job slot (if it has one) and an FFmpeg permit for the block."""
    release_slot: Release | None = None
    if task.slot is not None:
        job_dir = Path(task.job_dir)
        try:
            release_slot = slots.try_acquire(job_dir, task.slot, task.order, task.follows)
            if release_slot is None:  # its turn has not come: wait, parked
                beat = _waiting_heartbeat(task, stop_queue)
                parked_at = time.monotonic()
                async with capacity.parked_while():
                    release_slot = await _unless_stopped(
                        slots.acquire(job_dir, task.slot, task.order, task.follows),
                        pushed,
                        label,
                        beat,
                    )
                metrics.slot_waited(time.monotonic() - parked_at)
        except OSError as err:  # the slot's files cannot be made: a full or read-only disk
            failure = errors.write_failure(str(job_dir), err)
            if failure is None:
                raise
            raise ApplicationError(
                f"{label}: {failure.message}", type=failure.type, non_retryable=True
            ) from None
    try:
        async with capacity.ffmpeg_permit():
            if (gone := job_dir_gone(Path(task.job_dir))) is not None:
                raise gone
            refuse_if_input_changed(task)
            yield
    finally:
        if release_slot is not None:
            release_slot(end_turn=not workflow_gone())


async def _unless_stopped(
    waiting: Awaitable[Release], pushed: asyncio.Event, label: str, beat: Callable[[], None]
) -> Release:
    """Await the slot, heartbeating every `WAITING_BEAT_S`; a pushed stop, a cancel or a
    worker shutdown ends the wait the way each ends a running render (`StoppedForCancel`,
    cancelled, `WorkerShutdown`). A slot that arrives as the wait ends is released at once."""
    acquiring = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(pushed.wait())
    shutdown = asyncio.ensure_future(activity.wait_for_worker_shutdown())
    try:
        while not acquiring.done():
            await asyncio.wait(
                {acquiring, stopped, shutdown},
                timeout=WAITING_BEAT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if acquiring.done():
                break
            if not (stopped.done() or shutdown.done()):
                beat()  # every WAITING_BEAT_S while it waits: a short wait sends none
                continue
            acquiring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                (await acquiring)()
            if stopped.done():
                if not cleanup_follows():
                    raise errors.stopped_for_cancel(label)
                raise asyncio.CancelledError()
            raise errors.worker_shutdown(
                f"{label}: stopped before FFmpeg ({errors.WORKER_SHUTDOWN_REASON})"
            )
        return acquiring.result()
    except asyncio.CancelledError:
        acquiring.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            (await acquiring)()
        raise
    finally:
        stopped.cancel()
        shutdown.cancel()


def _waiting_heartbeat(task: RenderTask, stop_queue: str | None) -> Callable[[], None]:
    details = RenderHeartbeat(
        output=task.output_name,
        recipe=recipe_summary(task.recipe),
        temp=str(Path(task.job_dir) / task.temp_name),
        stop_queue=stop_queue,
        waiting_for_slot=task.slot,
    ).model_dump()
    return lambda: activity.heartbeat(details)
