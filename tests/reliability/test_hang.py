"""A hung FFmpeg is noticed, stopped by the stages and retried; helpers die with their group."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import Job, assert_manifest_matches_disk, wait_for
from tests.reliability.conftest import TinyClips
from tests.reliability.support import (
    Stopwatch,
    history_facts,
    job_processes,
    leftovers,
    real_ffmpeg,
    write_script,
)
from varia.errors import STALLED
from varia.ffmpeg.progress import ProgressReport
from varia.ffmpeg.runner import run_ffmpeg
from varia.processes import ProcessIdentity
from varia.worker import build_worker


def _no_tick(report: ProgressReport | None, identity: ProcessIdentity) -> None:
    return None


def _pid_from(path: Path) -> ProcessIdentity | None:
    """The identity of the live process whose pid a script wrote to `path` (None until then)."""
    try:
        return ProcessIdentity.of(int(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def _gone(pid: int) -> bool:
    """True if no process runs as `pid` any more (or only a zombie does)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_stalled_render_is_stopped_by_kill_and_retried(
    bare_job: Job, tiny_clips: TinyClips, tmp_path: Path
) -> None:
    """First attempt: a stand-in that never progresses and ignores `q` and SIGTERM."""
    pid_file = tmp_path / "hung.pid"
    stand_in = write_script(
        tmp_path / "ffmpeg-hangs-once",
        f'if mkdir "{tmp_path}/hung-once" 2>/dev/null; then\n'
        "  trap '' TERM INT\n"
        f'  echo $$ > "{pid_file}"\n'
        "  exec sleep 600\n"
        "fi\n"
        f'exec "{real_ffmpeg()}" "$@"\n',
    )
    hang_settings = bare_job.settings.model_copy(
        update={"ffmpeg": str(stand_in), "stall_timeout_s": 1.0, "stop_stage_timeout_s": 0.5}
    )
    clock = Stopwatch()
    async with build_worker(bare_job.client, hang_settings):
        handle = await bare_job.start([tiny_clips.tiny], 1)
        hung = await wait_for(lambda: _pid_from(pid_file), timeout_s=30, what="the hang")
        result = await asyncio.wait_for(handle.result(), 60)
        recovered = clock()
    assert not hung.is_alive()
    assert result.state == "completed" and result.completed == 1
    job_dir = bare_job.dir
    assert_manifest_matches_disk(job_dir)
    assert leftovers(job_dir) == [] and job_processes(bare_job.id) == []
    [start] = (await history_facts(handle))["render_starts"]
    assert start.attempt == 2 and start.last_failure_type == STALLED
    assert "stalled: no progress for 1s" in start.last_failure
    assert "ended by kill" in start.last_failure  # `q` and SIGTERM were ignored
    print(f"\nRECOVERY hang: stall timeout 1s -> job completed in {recovered}s")


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO that has a writer but never gets data: reading it blocks forever."""
    path = tmp_path / "never.ts"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR)
    yield path
    os.close(fd)


async def test_real_ffmpeg_blocked_on_its_input_is_detected_and_killed(fifo: Path) -> None:
    argv = [real_ffmpeg(), "-hide_banner", "-nostats", "-progress", "pipe:1"]
    argv += ["-f", "mpegts", "-i", f"file:{fifo}", "-f", "null", "-"]
    outcome = await run_ffmpeg(argv, on_tick=_no_tick, stall_timeout_s=0.5, stage_timeout_s=0.5)
    assert outcome.stop_reason == "stalled: no progress for 0.5s"
    assert outcome.stop_stage == "kill"  # a blocked read ignores `q` and SIGTERM
    assert outcome.returncode != 0


def _with_helper(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in FFmpeg that starts a helper in its process group, then becomes FFmpeg."""
    helper_pid = tmp_path / "helper.pid"
    script = write_script(
        tmp_path / "ffmpeg-with-helper",
        f'sleep 600 &\necho $! > "{helper_pid}.tmp"\nmv "{helper_pid}.tmp" "{helper_pid}"\n'
        f'exec "{real_ffmpeg()}" "$@"\n',
    )
    return script, helper_pid


def _lavfi_argv(ffmpeg: str, seconds: int, out: Path) -> list[str]:
    return [
        ffmpeg,
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.1",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=320x240:rate=25:duration={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-threads",
        "1",
        "-y",
        f"file:{out}",
    ]


async def test_cancelled_ffmpeg_takes_its_helpers_with_it(tmp_path: Path) -> None:
    script, helper_pid = _with_helper(tmp_path)
    progressed = asyncio.Event()

    def tick(report: ProgressReport | None, identity: ProcessIdentity) -> None:
        if report is not None and (report.frame or 0) > 0:
            progressed.set()

    run = asyncio.create_task(
        run_ffmpeg(_lavfi_argv(str(script), 600, tmp_path / "out.mp4"), on_tick=tick)
    )
    await wait_for(progressed.is_set, timeout_s=30, what="FFmpeg progress")
    helper = await wait_for(lambda: _pid_from(helper_pid), timeout_s=10, what="the helper")
    run.cancel()
    outcome = await run
    assert outcome.cancelled and outcome.stop_stage in ("q", "term", "kill")
    # SIGKILL was sent; the helper is gone as soon as the kernel has run its exit
    await wait_for(lambda: not helper.is_alive(), timeout_s=5, what="the helper to die")


async def test_ffmpeg_that_exits_leaves_no_helper_behind(tmp_path: Path) -> None:
    script, helper_pid = _with_helper(tmp_path)
    outcome = await run_ffmpeg(_lavfi_argv(str(script), 1, tmp_path / "out.mp4"), on_tick=_no_tick)
    assert outcome.returncode == 0 and outcome.stop_stage is None
    pid = int(helper_pid.read_text())
    await wait_for(lambda: _gone(pid), timeout_s=5, what="the helper to die")
