"""Disk full and an unwritable output dir: a clear non-retryable error, no temp file left."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from tests.helpers import assert_manifest_matches_disk, failure_text, start_job
from tests.reliability.conftest import TinyClips
from tests.reliability.support import history_facts, job_processes, leftovers, write_script
from varia.config import Settings
from varia.worker import VariaWorker, build_worker


async def _run_failing(
    client: Client, task_queue: str, job_id: str, request: dict[str, object]
) -> tuple[str, WorkflowFailureError]:
    handle = await start_job(client, task_queue, job_id, request)
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
    client: Client,
    worker: Worker,
    task_queue: str,
    job_id: str,
    tiny_clips: TinyClips,
    tiny_tmpfs: Path,
) -> None:
    request = {"inputs": [str(tiny_clips.small)], "variations": 1, "output_dir": str(tiny_tmpfs)}
    attempts, failure = await _run_failing(client, task_queue, job_id, request)
    _assert_no_space_handled(tiny_tmpfs / job_id, failure, attempts)


async def test_no_space_reported_by_ffmpeg_removes_the_partial(
    client: Client,
    settings: Settings,
    task_queue: str,
    job_id: str,
    tiny_clips: TinyClips,
    out_dir: Path,
    tmp_path: Path,
) -> None:
    """Without root: an FFmpeg stand-in writes part of its output, then fails with ENOSPC."""
    stand_in = write_script(
        tmp_path / "ffmpeg-disk-full",
        'for last; do :; done\nprintf partial > "${last#file:}"\n'
        'echo "Error writing trailer: No space left on device" >&2\nexit 228\n',
    )
    full = settings.model_copy(update={"ffmpeg": str(stand_in)})
    request = {"inputs": [str(tiny_clips.tiny)], "variations": 1, "output_dir": str(out_dir)}
    async with build_worker(client, full):
        attempts, failure = await _run_failing(client, task_queue, job_id, request)
    _assert_no_space_handled(out_dir / job_id, failure, attempts)


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
    client: Client,
    worker: Worker,
    task_queue: str,
    job_id: str,
    tiny_clips: TinyClips,
    unwritable_dir: Path,
) -> None:
    request = {"inputs": [str(tiny_clips.tiny)], "variations": 1, "output_dir": str(unwritable_dir)}
    attempts, failure = await _run_failing(client, task_queue, job_id, request)
    message = failure_text(failure)
    assert f"output_dir {str(unwritable_dir)!r} is not writable" in message, message
    assert isinstance(failure.cause, ApplicationError)
    assert failure.cause.type == "OutputDirUnusable" and failure.cause.non_retryable
    assert attempts == "[]"  # no render ran
    assert list(unwritable_dir.iterdir()) == []  # nothing written, nothing to clean
    assert job_processes(job_id) == []  # (no job dir could be made: no manifest either)


async def test_output_dir_with_a_file_in_the_way_is_named_as_such(
    client: Client,
    worker: VariaWorker,
    task_queue: str,
    job_id: str,
    tiny_clips: TinyClips,
    tmp_path: Path,
) -> None:
    in_the_way = tmp_path / "out"
    in_the_way.write_text("a file, not a directory")
    request = {"inputs": [str(tiny_clips.tiny)], "variations": 1, "output_dir": str(in_the_way)}
    attempts, failure = await _run_failing(client, task_queue, job_id, request)
    assert isinstance(failure.cause, ApplicationError)
    assert failure.cause.type == "OutputDirUnusable", failure_text(failure)
    expected = f"output_dir {str(in_the_way)!r} is not a directory (a file is in the way)"
    assert expected in failure.cause.message
    assert attempts == "[]"
    assert in_the_way.read_text() == "a file, not a directory"
