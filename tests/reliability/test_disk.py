"""Disk full and an unwritable output dir: a clear non-retryable error, no temp file left."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.helpers import Job, assert_manifest_matches_disk, failure_text
from tests.reliability.conftest import TinyClips
from tests.reliability.support import history_facts, job_processes, leftovers, write_script
from varia.errors import OUTPUT_DIR_UNUSABLE
from varia.worker import build_worker


async def _run_failing(job: Job, source: Path) -> tuple[str, WorkflowFailureError]:
    """Run one variation of `source`, which must fail; (render attempts, the failure)."""
    handle = await job.start([source], 1)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    facts = await history_facts(handle)
    attempts = [start.attempt for start in facts["render_starts"]]
    return str(attempts), failure.value


def _assert_no_space_handled(job_dir: Path, failure: WorkflowFailureError, attempts: str) -> None:
    message = failure_text(failure)
    assert "No space left on device" in message and "variation 0" in message, message
    assert attempts == "[1]", "a full disk is not retried"
    assert leftovers(job_dir) == []
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "failed" and manifest["outputs"] == []
    assert "No space left on device" in " ".join(manifest["errors"])
    assert job_processes(job_dir.name) == []


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs (needs root and mount rights; skipped otherwise). Unmounted by path."""
    mount_point = tmp_path / "full disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


async def test_disk_full_is_a_clear_non_retryable_error(
    job: Job, tiny_clips: TinyClips, tiny_tmpfs: Path
) -> None:
    attempts, failure = await _run_failing(replace(job, out_dir=tiny_tmpfs), tiny_clips.small)
    _assert_no_space_handled(tiny_tmpfs / job.id, failure, attempts)


async def test_no_space_reported_by_ffmpeg_removes_the_partial(
    bare_job: Job, tiny_clips: TinyClips, tmp_path: Path
) -> None:
    """Without root: an FFmpeg stand-in writes part of its output, then fails with ENOSPC."""
    stand_in = write_script(
        tmp_path / "ffmpeg-disk-full",
        'for last; do :; done\nprintf partial > "${last#file:}"\n'
        'echo "Error writing trailer: No space left on device" >&2\nexit 228\n',
    )
    full = bare_job.settings.model_copy(update={"ffmpeg": str(stand_in)})
    async with build_worker(bare_job.client, full):
        attempts, failure = await _run_failing(bare_job, tiny_clips.tiny)
    _assert_no_space_handled(bare_job.dir, failure, attempts)


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can create entries in: immutable as root (chmod does not stop
    root), read-only by mode otherwise. Skipped if neither really blocks a write."""
    path = tmp_path / "locked"
    path.mkdir()
    if os.geteuid() == 0:
        locked = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
        unlock = ["chattr", "-i", str(path)]
    else:
        path.chmod(0o555)
        locked, unlock = True, ["chmod", "755", str(path)]
    try:
        (path / "probe").mkdir()
    except OSError:
        pass
    else:
        locked = False
    try:
        if not locked:
            pytest.skip("no way to make a directory unwritable here")
        yield path
    finally:
        subprocess.run(unlock, check=False)


async def test_unwritable_output_dir_is_a_clear_non_retryable_error(
    job: Job, tiny_clips: TinyClips, unwritable_dir: Path
) -> None:
    attempts, failure = await _run_failing(replace(job, out_dir=unwritable_dir), tiny_clips.tiny)
    message = failure_text(failure)
    assert f"output_dir {str(unwritable_dir)!r} is not writable" in message, message
    assert isinstance(failure.cause, ApplicationError)
    assert failure.cause.type == OUTPUT_DIR_UNUSABLE and failure.cause.non_retryable
    assert attempts == "[]"  # no render ran
    assert list(unwritable_dir.iterdir()) == []  # nothing written, nothing to clean
    assert job_processes(job.id) == []  # (no job dir could be made: no manifest either)


async def test_output_dir_with_a_file_in_the_way_is_named_as_such(
    job: Job, tiny_clips: TinyClips, tmp_path: Path
) -> None:
    in_the_way = tmp_path / "in the way"
    in_the_way.write_text("a file, not a directory")
    attempts, failure = await _run_failing(replace(job, out_dir=in_the_way), tiny_clips.tiny)
    assert isinstance(failure.cause, ApplicationError)
    assert failure.cause.type == OUTPUT_DIR_UNUSABLE, failure_text(failure)
    expected = f"output_dir {str(in_the_way)!r} is not a directory (a file is in the way)"
    assert expected in failure.cause.message
    assert attempts == "[]"
    assert in_the_way.read_text() == "a file, not a directory"
