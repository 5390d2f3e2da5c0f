"""A render refused in a way its siblings would be too stops them from being started (patch
"refuse-alike"). Found by review: an input that changed mid-job failed its variations one by
one, each a render, a failure and an error line, and a render that had waited for its turn ran
FFmpeg on the changed file (the input was checked before the wait, not after).

Real dev server, real (paced) FFmpeg on tiny clips. The job directory deleted mid-job, the
other refusal that halts a job, is `tests/test_job_dir_gone.py`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.helpers import (
    ffmpeg_spans,
    paced_ffmpeg,
    query_progress,
    span_logging_ffmpeg,
    start_job,
    wait_for,
)
from varia import errors, names
from varia.clips import make_clip
from varia.config import Settings
from varia.models import Manifest
from varia.verify import verify_job_dir
from varia.worker import build_worker


def _touch(path: Path) -> None:
    """Move the file's modification time on by a second: same bytes, same size."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def test_an_input_changed_mid_job_stops_its_renders_and_the_other_input_goes_on(
    client: Client, settings: Settings, job_id: str, out_dir: Path, tmp_path: Path
) -> None:
    touched = make_clip(tmp_path / "touched.mp4", seconds=2, size="160x120")
    steady = make_clip(tmp_path / "steady.mp4", seconds=1, size="160x120")
    script, log = span_logging_ffmpeg(tmp_path, str(paced_ffmpeg(tmp_path)))
    request = {
        "inputs": [str(touched), str(steady)],
        "variations": 4,
        "output_dir": str(out_dir),
        "concurrency": 1,  # the first render runs, the second waits for its turn
        "threads": 1,
    }
    worker = settings.model_copy(update={"ffmpeg": str(script)})
    async with build_worker(client, worker):
        handle = await start_job(client, settings.task_queue, job_id, request)
        await wait_for(
            lambda: log.exists() and "touched_v000" in log.read_text(),
            what="the first render of the input to run FFmpeg",
        )
        _touch(touched)  # while its first render runs: that one keeps the file it opened
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), 120)
        progress = await query_progress(handle)
        history = await handle.fetch_history()

    assert (progress.state, progress.completed, progress.failed) == ("failed", 5, 3), progress
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    touched_renders = [a for a in scheduled if a.startswith("render-0-")]
    assert touched_renders == ["render-0-0", "render-0-1"], scheduled
    runs = [Path(path).name for path in ffmpeg_spans(log)]
    assert sum("touched_v" in name for name in runs) == 1, f"FFmpeg on the changed file: {runs}"
    assert sum("steady_v" in name for name in runs) == 4, runs

    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == errors.JOB_FAILED
    assert cause.message.startswith("3 of 8 variations failed"), cause.message
    changed = [e for e in progress.errors if "changed since the job probed it" in e]
    skipped = [e for e in progress.errors if "2 more variation(s) not started" in e]
    assert len(changed) == 1 and "variation 1" in changed[0], progress.errors
    assert len(skipped) == 1 and str(touched) in skipped[0], progress.errors

    job_dir = out_dir / job_id
    manifest = Manifest.model_validate_json((job_dir / names.MANIFEST_NAME).read_text())
    assert (manifest.state, manifest.completed, manifest.failed) == ("failed", 5, 3)
    kept = sorted(entry.path for entry in manifest.outputs)
    assert len(kept) == 5 and sum(name.startswith("touched") for name in kept) == 1, kept
    assert verify_job_dir(job_dir).problems == []
