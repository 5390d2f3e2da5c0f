"""A worker SIGKILLed or SIGTERMed mid-render, and the retry's reaper of a previous FFmpeg."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment

from tests.conftest import Clips
from tests.helpers import (
    Job,
    assert_manifest_matches_disk,
    paced_ffmpeg,
    render_heartbeats,
    wait_for,
)
from tests.reliability.support import (
    Stopwatch,
    WorkerProcesses,
    history_facts,
    job_processes,
    leftovers,
)
from varia import activities, names
from varia.errors import WORKER_SHUTDOWN, WORKER_SHUTDOWN_REASON
from varia.ffmpeg.process import stop_foreign
from varia.models import JobResult, RenderHeartbeat
from varia.processes import ProcessIdentity
from varia.worker import build_worker


async def _first_render(client: Client, job_id: str) -> RenderHeartbeat:
    """Wait until a render's heartbeat shows FFmpeg (pid and progress); return it."""

    async def beating() -> RenderHeartbeat | None:
        for beat in (await render_heartbeats(client, job_id)).values():
            if beat.pid and beat.pid_create_time and beat.percent > 0:
                return beat
        return None

    return await wait_for(beating, timeout_s=60, what="FFmpeg to report progress")


async def _start_mid_render(
    job: Job, clips: Clips
) -> tuple[WorkflowHandle[Any, JobResult], RenderHeartbeat]:
    """Start the job (the 20 s clip, one variation); its first render's heartbeat once FFmpeg
    reports progress. The worker that takes it runs a paced FFmpeg (`_paced`), so that render
    lasts about 20 s: the test's signal surely lands mid-render (unpaced, it ran a few seconds,
    and a slow heartbeat could arrive after FFmpeg had finished)."""
    handle = await job.start([clips.long], 1, threads=1)
    return handle, await _first_render(job.client, job.id)


def _paced(tmp_path: Path) -> str:
    """`VARIA_FFMPEG` for a worker whose FFmpeg reads at native speed."""
    return str(paced_ffmpeg(tmp_path))


async def test_sigkilled_worker_ffmpeg_dies_and_retry_completes(
    bare_job: Job, worker_processes: WorkerProcesses, clips: Clips, tmp_path: Path
) -> None:
    client, settings, job_id = bare_job.client, bare_job.settings, bare_job.id
    doomed = worker_processes.start(bare_job.task_queue, VARIA_FFMPEG=_paced(tmp_path))
    handle, beat = await _start_mid_render(bare_job, clips)
    ffmpeg_identity = ProcessIdentity(beat.pid or 0, beat.pid_create_time or 0.0)
    assert psutil.Process(ffmpeg_identity.pid).ppid() == doomed.pid
    partial = Path(beat.temp)
    clock = Stopwatch()
    doomed.signal(signal.SIGKILL)
    doomed.process.wait(30)
    await wait_for(
        lambda: not ffmpeg_identity.is_alive(), timeout_s=10, what="FFmpeg to die with its worker"
    )
    assert partial.exists(), "the dead attempt left its partial file (the retry must remove it)"
    dead_partial = os.open(partial, os.O_RDONLY)  # see whether the retry unlinks this inode
    try:
        async with build_worker(client, settings):
            result = await asyncio.wait_for(handle.result(), 90)
            recovered = clock()
        assert os.fstat(dead_partial).st_nlink == 0, "the dead attempt's partial was reused"
    finally:
        os.close(dead_partial)
    assert result.state == "completed" and result.completed == 1
    job_dir = bare_job.dir
    assert_manifest_matches_disk(job_dir)
    assert leftovers(job_dir) == []
    assert job_processes(job_id) == []
    facts = await history_facts(handle)
    [start] = facts["render_starts"]
    assert start.attempt == 2 and "heartbeat" in start.last_failure.lower()
    print(f"\nRECOVERY sigkill: killed worker -> job completed in {recovered}s")


async def test_sigtermed_worker_stops_ffmpeg_and_job_completes_elsewhere(
    bare_job: Job, worker_processes: WorkerProcesses, clips: Clips, tmp_path: Path
) -> None:
    client, settings, job_id = bare_job.client, bare_job.settings, bare_job.id
    leaving = worker_processes.start(
        bare_job.task_queue, VARIA_GRACEFUL_SHUTDOWN="8", VARIA_FFMPEG=_paced(tmp_path)
    )
    handle, beat = await _start_mid_render(bare_job, clips)
    ffmpeg_identity = ProcessIdentity(beat.pid or 0, beat.pid_create_time or 0.0)
    clock = Stopwatch()
    leaving.signal(signal.SIGTERM)
    returncode = await asyncio.to_thread(leaving.process.wait, 30)
    assert returncode == 0, leaving.log()
    assert not ffmpeg_identity.is_alive(), "the worker exited before its FFmpeg did"
    assert job_processes(job_id) == []
    async with build_worker(client, settings):
        result = await asyncio.wait_for(handle.result(), 90)
        recovered = clock()
    assert result.state == "completed" and result.completed == 1
    job_dir = bare_job.dir
    assert_manifest_matches_disk(job_dir)
    assert leftovers(job_dir) == []
    facts = await history_facts(handle)
    [start] = facts["render_starts"]
    assert start.attempt == 2
    assert start.last_failure_type == WORKER_SHUTDOWN, start
    assert WORKER_SHUTDOWN_REASON in start.last_failure
    print(f"\nRECOVERY sigterm: SIGTERM -> job completed in {recovered}s")


# ---- the retry's reaper: pid + create time + command line --------------------------------

_IGNORE_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)
_PLAIN = "import time; print('ready', flush=True); time.sleep(600)"


def _spawn(code: str, output: Path) -> subprocess.Popen[bytes]:
    """A stand-in for a left-over FFmpeg: its command line names `output`."""
    proc = subprocess.Popen([sys.executable, "-c", code, f"file:{output}"], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def _left_over(
    code: str, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> tuple[Path, subprocess.Popen[bytes], ProcessIdentity]:
    """A previous attempt's FFmpeg stand-in writing a render's temp name: (temp, it, its id)."""
    temp = tmp_path / names.temp_name("clip_v000.mp4")
    proc = _spawn(code, temp)
    spawned.append(proc)
    return temp, proc, ProcessIdentity.of(proc.pid)


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            ProcessIdentity.of(proc.pid).send(signal.SIGKILL)
            proc.wait(10)


class _SignalSpy:
    """Records every signal sent during the test (psutil signals through `os.kill` too)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[int, int]] = []
        kill = os.kill

        def spy_kill(pid: int, sig: int) -> None:
            self.sent.append((pid, sig))
            kill(pid, sig)

        monkeypatch.setattr(os, "kill", spy_kill)


def _with_heartbeat(beat: RenderHeartbeat) -> ActivityEnvironment:
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info, attempt=2, heartbeat_details=[beat.model_dump()]
    )
    return environment


async def test_reaper_stops_the_previous_attempts_ffmpeg(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    temp, _, identity = _left_over(_IGNORE_TERM, tmp_path, spawned)
    spy = _SignalSpy(monkeypatch)
    beat = RenderHeartbeat(pid=identity.pid, pid_create_time=identity.create_time, output=str(temp))
    await _with_heartbeat(beat).run(activities._stop_previous_attempt, temp, 0.5)
    assert not identity.is_alive()
    # it ignored SIGTERM, so the reaper escalated; nothing else was signalled
    assert spy.sent == [(identity.pid, signal.SIGTERM), (identity.pid, signal.SIGKILL)]


async def test_reaper_never_signals_a_reused_pid_or_another_program(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    temp, proc, identity = _left_over(_PLAIN, tmp_path, spawned)
    spy = _SignalSpy(monkeypatch)
    reused = RenderHeartbeat(  # the pid now belongs to a process started at another time
        pid=identity.pid, pid_create_time=identity.create_time - 5.0, output=str(temp)
    )
    await _with_heartbeat(reused).run(activities._stop_previous_attempt, temp, 0.5)
    other_output = tmp_path / names.temp_name("other_v000.mp4")  # not this output's FFmpeg
    assert await stop_foreign(identity, must_contain=str(other_output), stage_timeout_s=0.5) is None
    assert spy.sent == []
    assert identity.is_alive() and proc.poll() is None
    stage = await stop_foreign(identity, must_contain=str(temp), stage_timeout_s=2.0)
    assert stage == "term" and spy.sent[0] == (identity.pid, signal.SIGTERM)
    assert ProcessIdentity.of(os.getpid()).is_alive()  # we were never a target
