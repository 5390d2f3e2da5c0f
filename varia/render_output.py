"""A render's output: check it, commit it into the job directory, measure and record it; after a
cancel, keep it if FFmpeg finished it anyway (completion wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from varia import errors, jobdir, media
from varia.despite_cancel import run_to_end
from varia.ffmpeg.argv import render_tag
from varia.ffmpeg.runner import FfmpegOutcome
from varia.measure import complete_result, output_samples
from varia.models import RenderResult, RenderTask


def cleanup_follows() -> bool:
    """True when the workflow cancelled this render: its cleanup deletes (and records) the
    partial file next. For any other ending the render deletes its own partial file."""
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested


def workflow_gone() -> bool:
    """True when this render was stopped because its workflow is gone (terminated, timed out:
    the server no longer knows the attempt). The renders queued behind it in its job slot
    must then not start FFmpeg: it leaves its turn without ending it (`JobSlots.leave_turn`),
    and they stop at their own next heartbeat."""
    details = activity.cancellation_details()
    return details is not None and details.not_found


async def keep_if_whole(
    outcome: FfmpegOutcome,
    temp: Path,
    final: Path,
    task: RenderTask,
    argv: list[str],
    pushed: bool,
) -> RenderResult:
    """After a cancel: keep an output that FFmpeg finished anyway, else the cancel stands.

    `q` also exits 0, with a shorter file: the duration check tells the two apart. A pushed
    cancel that the SDK has not delivered yet ends the attempt as `StoppedForCancel`
    (non-retryable; the workflow counts it as cancelled).
    """
    if outcome.returncode == 0:
        try:
            return await commit_output(temp, final, task, argv)
        except ApplicationError:
            pass
    if pushed and not cleanup_follows():
        raise errors.stopped_for_cancel(f"{task.media.path} variation {task.variation}")
    raise asyncio.CancelledError()


async def commit_output(temp: Path, final: Path, task: RenderTask, argv: list[str]) -> RenderResult:
    """Check the output, rename it into place, measure and record it; a cancel arriving now
    does not undo it."""
    return await run_to_end(asyncio.to_thread(_check_and_rename, temp, final, task, argv))


def _check_and_rename(temp: Path, final: Path, task: RenderTask, argv: list[str]) -> RenderResult:
    """Check the output while its data goes to disk, measure it from the same opening of the
    file (the check's container decodes the samples) and hash it, then commit it: the rename
    follows the check and `jobdir.commit_output`'s fsync. An output that fails its check is
    not measured (it leaves no sheet frame)."""
    flushing = _flusher().submit(_flush, temp)
    try:
        with media.checked_output(
            str(temp), task.expected_duration_s, task.duration_tolerance_s
        ) as (container, duration):
            samples = output_samples(container, temp, task)
    except media.MediaError as err:
        raise ApplicationError(
            f"{task.media.path} variation {task.variation}: {err}", type=errors.OUTPUT_INVALID
        ) from None
    recorded = complete_result(
        _result_for(final, temp, task, 0.0), final, task, argv, temp, samples
    )
    wait([flushing])
    try:
        jobdir.commit_output(temp, final)
    except OSError as err:
        raise errors.write_failure(str(final), err) or err from None
    return recorded.model_copy(update={"duration_s": round(duration, 3)})


_flush_pool: ThreadPoolExecutor | None = None
_flush_lock = threading.Lock()


def _flusher() -> ThreadPoolExecutor:
    """The process's threads for pre-commit flushes (one pool, not two new threads per
    output: starting and joining them cost the worker more than the flush itself)."""
    global _flush_pool
    with _flush_lock:
        if _flush_pool is None:
            _flush_pool = ThreadPoolExecutor(4, thread_name_prefix="varia-flush")
        return _flush_pool


def _flush(path: Path) -> None:
    """fsync a file ahead of its commit; a failure is left to the commit's own fsync."""
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())


def already_rendered(final: Path, task: RenderTask, argv: list[str]) -> RenderResult | None:
    """The result of an earlier attempt that put a whole output in place, then lost it: only
    a file tagged by this very argv (`render_tag`). Anything else under the name (the input
    copied there, another job's output) is rendered over."""
    if final.is_symlink() or not final.is_file():
        return None
    try:
        with media.checked_output(
            str(final), task.expected_duration_s, task.duration_tolerance_s
        ) as (container, duration):
            if container.metadata.get("comment") != render_tag(argv):
                return None
            samples = output_samples(container, final, task)
    except media.MediaError:
        return None
    return complete_result(
        _result_for(final, final, task, duration), final, task, argv, frames=samples
    )


def _result_for(final: Path, now: Path, task: RenderTask, duration: float) -> RenderResult:
    """The bare result of output `final`, whose bytes are at `now`."""
    return RenderResult(
        input_index=task.input_index,
        variation=task.variation,
        path=final.name,
        bytes=now.stat().st_size,
        duration_s=round(duration, 3),
    )
