"""Data safety over requests (issue 9): colliding names, playlists and over-limit inputs, on the
real dev server with the real FFmpeg."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from tests import bad_inputs
from tests.helpers import assert_manifest_matches_disk, read_manifest, run_job, start_job
from varia import errors
from varia.clips import make_clip
from varia.config import Settings
from varia.models import JobResult
from varia.recipes import make_recipe, output_name, output_stems
from varia.worker import build_worker


async def test_colliding_output_names_each_output_is_its_own_inputs_render(
    client: Client, worker: Worker, task_queue: str, job_id: str, tmp_path: Path, out_dir: Path
) -> None:
    """Issue 9 defect 1: `/a/x.mp4`, `/b/x.mp4`, `/c/x-1.mp4` got stems `x-0`, `x-1`, `x-1`;
    two inputs shared `x-1_v000.mp4`. Three different clips (size and length) prove each
    output is the render of the input the manifest names."""
    shapes = {
        "a/x.mp4": ("160x120", 1.0),
        "b/x.mp4": ("192x144", 1.6),
        "c/x-1.mp4": ("224x160", 2.2),
    }
    inputs = []
    for relative, (size, seconds) in shapes.items():
        path = tmp_path / relative
        path.parent.mkdir()
        inputs.append(str(make_clip(path, seconds=seconds, size=size, audio=False)))
    result = await run_job(
        client,
        task_queue,
        job_id,
        {
            "inputs": inputs,
            "variations": 1,
            "output_dir": str(out_dir),
            "seed": 3,
            "concurrency": 3,
        },
    )
    assert (result.state, result.completed, result.failed) == ("completed", 3, 0)
    job_dir = Path(result.job_dir)
    manifest = assert_manifest_matches_disk(job_dir)
    stems = output_stems(inputs)
    assert stems == ["x~0", "x~1", "x-1"]
    by_input = {entry["input"]: entry for entry in manifest["outputs"]}
    assert sorted(by_input) == sorted(inputs) and len(manifest["outputs"]) == 3
    for index, (path, (size, seconds)) in enumerate(zip(inputs, shapes.values(), strict=True)):
        entry = by_input[path]
        assert entry["input_index"] == index
        assert entry["path"] == output_name(stems[index], 0, 1)
        speed = make_recipe(3, index, 0).speed
        with av.open(str(job_dir / entry["path"])) as rendered:
            video = rendered.streams.video[0]
            assert f"{video.codec_context.width}x{video.codec_context.height}" == size
        assert entry["duration_s"] == pytest.approx(seconds / speed, abs=0.15)
    assert len({p.name.casefold() for p in job_dir.iterdir()}) == len(list(job_dir.iterdir()))


def _mark_unread(path: Path) -> None:
    os.utime(path, (1_000_000, 2_000_000))  # atime before mtime: the next read moves it


def _unread(path: Path) -> bool:
    return path.stat().st_atime == 1_000_000


def _reads_show_in_atime(directory: Path) -> bool:
    """False on a file system mounted noatime (then reads cannot be seen this way)."""
    control = directory / "atime-control"
    control.write_bytes(b"x" * 64)
    _mark_unread(control)
    control.read_bytes()
    return not _unread(control)


async def _bad_input_failure(handle: WorkflowHandle[object, JobResult]) -> str:
    """The job failed as `BadInput` (final): return the message its caller reads."""
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert (cause.type, cause.non_retryable) == (errors.BAD_INPUT, True), cause
    return cause.message


async def test_playlist_inputs_read_nothing_outside_the_allowed_roots(
    client: Client, settings: Settings, task_queue: str, job_id: str, tmp_path: Path
) -> None:
    """Issue 9 defect 8: with `VARIA_ALLOWED_INPUT_ROOTS=/allowed`, `/allowed/innocent.m3u8` (an
    HLS playlist naming a segment elsewhere) passed the probe and the job rendered the outside
    file. Now it, the same playlist named `.mp4`, a concat list and an image sequence each fail
    the job with a final BadInput naming the file and the format, and the outside segment is
    never read. A declared endless duration is refused by the default limit the same way."""
    allowed, outside, out = tmp_path / "allowed", tmp_path / "outside", tmp_path / "out"
    allowed.mkdir()
    playlist = allowed / "innocent.m3u8"
    segment = bad_inputs.hls_playlist(playlist, outside)
    renamed = allowed / "innocent.mp4"
    shutil.copyfile(playlist, renamed)
    clip = make_clip(tmp_path / "clip.mp4", seconds=1, size="160x120", audio=False)
    cases = [
        (playlist, "container format varia does not read: 'hls'"),
        (renamed, "FFmpeg could not find a known container format"),
        (bad_inputs.concat_list(allowed / "list.ffconcat", clip), "does not read: 'concat'"),
        (bad_inputs.image_sequence(allowed / "seq"), "does not read: 'image2'"),
        (bad_inputs.endless_mkv(allowed / "endless.mkv"), "(VARIA_MAX_INPUT_DURATION)"),
    ]
    watch_reads = _reads_show_in_atime(tmp_path)
    confined = settings.model_copy(update={"allowed_input_roots": [allowed]})
    async with build_worker(client, confined):
        for index, (path, named) in enumerate(cases):
            _mark_unread(segment)
            handle = await start_job(
                client,
                task_queue,
                f"{job_id}-{index}",
                {"inputs": [str(path)], "variations": 1, "output_dir": str(out)},
            )
            message = await _bad_input_failure(handle)
            assert repr(str(path)) in message and named in message, message
            assert "Errno" not in message
            if watch_reads:
                assert _unread(segment), f"the outside segment was read for {path.name}"
            assert read_manifest(out / f"{job_id}-{index}")["outputs"] == []
    assert sorted(p.name for p in outside.iterdir()) == ["seg0.ts"]
