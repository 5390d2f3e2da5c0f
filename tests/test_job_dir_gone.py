"""A job directory deleted while its job runs (`rm -rf <output_dir>/<job id>`): the renders
running stop FFmpeg, those waiting for their slot's turn fail at once instead of waiting for a
turn nobody can record any more (they waited forever: found by review), none is retried, no
FFmpeg starts, no further render is scheduled (each failed alike: found by review; patch
"refuse-alike"), and cleanup says the directory is gone; the job fails in those words. Real dev
server, real (paced) FFmpeg on a tiny clip.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.helpers import (
    paced_ffmpeg,
    processes_mentioning,
    query_progress,
    span_logging_ffmpeg,
    start_job,
    wait_for,
    wait_rendering,
)
from varia import errors, names
from varia.client.jobs import Jobs
from varia.clips import make_clip
from varia.config import Settings
from varia.models import JobRequest
from varia.worker import build_worker


def _ffmpeg_started(log: Path) -> list[str]:
    """The renders' FFmpeg runs the span log saw start (not `ffmpeg -version`)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.startswith("start ") and line.endswith(".part")]


async def test_a_job_whose_directory_is_deleted_fails_at_once_naming_it(
    client: Client, settings: Settings, job_id: str, out_dir: Path, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=8, size="160x120")  # about 8 s, paced
    script, log = span_logging_ffmpeg(tmp_path, str(paced_ffmpeg(tmp_path)))
    job_dir = out_dir / job_id
    request = JobRequest(
        inputs=[str(clip)], variations=6, output_dir=str(out_dir), concurrency=2, threads=1
    )
    worker = settings.model_copy(update={"ffmpeg": str(script), "max_concurrent_renders": 4})
    async with build_worker(client, worker):
        handle = await start_job(client, settings.task_queue, job_id, request)

        async def two_wait() -> bool:  # 4 (2 per slot) taken by the worker, 2 running FFmpeg
            pending = (await handle.describe()).raw_description.pending_activities
            started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            renders = [p for p in pending if p.activity_type.name == names.RENDER]
            return [p.state for p in renders] == [started] * 4

        await wait_rendering(client, job_id, at_least=2)  # FFmpeg writes its output
        await wait_for(two_wait, what="the other 2 renders to wait in the slots")
        assert len(_ffmpeg_started(log)) == 2
        shutil.rmtree(job_dir)
        deleted = time.monotonic()
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), 60)
        took = time.monotonic() - deleted
        progress = await query_progress(handle)
        status = await Jobs(client, settings).status(job_id)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), f"not the bare activity failure: {cause!r}"
    assert cause.type == errors.OUTPUT_DIR_UNUSABLE
    gone = f"the job directory {str(job_dir)!r} was deleted while the job ran"
    assert gone in cause.message and "no manifest" in cause.message, cause.message
    assert status.errors and gone in status.errors[0], status.errors
    assert (progress.state, progress.completed, progress.failed) == ("failed", 0, 4)
    assert "4 of 6 variations failed" in cause.message, cause.message
    assert all(gone in error for error in progress.errors), progress.errors
    assert took < 20, f"the job took {took:.1f}s to end after its directory was deleted"
    history = await handle.fetch_history()
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert attempts and set(attempts) == {1}, f"retried: attempts {attempts}"
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert len(scheduled) == 4, f"renders scheduled after the directory was found gone: {scheduled}"
    assert len(_ffmpeg_started(log)) == 2, "the waiting renders started no FFmpeg"
    assert processes_mentioning(str(job_dir)) == []
    assert list(out_dir.iterdir()) == [], "nothing made again, nothing written beside it"
