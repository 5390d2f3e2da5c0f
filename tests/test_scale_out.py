"""Scale-out: one job across two real `varia worker` processes on one server, one of them
SIGKILLed mid-render. Both take work, the job completes, nothing is lost or left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEST_HEARTBEAT_THROTTLE_S
from tests.helpers import (
    assert_manifest_matches_disk,
    paced_ffmpeg,
    processes_mentioning,
    start_job,
    wait_for,
)
from varia import names
from varia.client.pollers import poller_identities
from varia.clips import make_clip
from varia.models import RenderHeartbeat
from varia.processes import ProcessIdentity, death_signal_hook, terminate

VARIA = str(Path(sys.executable).parent / "varia")


@dataclass
class WorkerProcess:
    """A `varia worker` subprocess with its own identity; stopped by its pid only."""

    name: str
    process: subprocess.Popen[bytes]
    identity: ProcessIdentity
    log: Path


class Workers:
    """Starts `varia worker` subprocesses on one task queue; kills the ones left at the end."""

    def __init__(self, address: str, task_queue: str, log_dir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VARIA_")} | {
            "TEMPORAL_ADDRESS": address,
            "VARIA_TASK_QUEUE": task_queue,
            "VARIA_MAX_CONCURRENT_RENDERS": "1",
            "VARIA_STOP_STAGE_TIMEOUT": "2",
            "VARIA_GRACEFUL_SHUTDOWN": "5",
            "VARIA_LOG_FORMAT": "json",
            "VARIA_FFMPEG": str(paced_ffmpeg(log_dir)),
            # as in-process workers: the test finds a render by its heartbeat, which the default
            # 5 s throttle sends 2.5 s in, late in a 3 s clip's render on a fast box
            "VARIA_HEARTBEAT_THROTTLE": str(TEST_HEARTBEAT_THROTTLE_S),
        }
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, name: str) -> WorkerProcess:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [VARIA, "worker"],
                env=self.env | {"VARIA_WORKER_IDENTITY": name},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=death_signal_hook(),
            )
        worker = WorkerProcess(name, process, ProcessIdentity.of(process.pid), log)
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            terminate(worker.process, worker.identity, timeout_s=15)

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log.read_text(errors='replace')}" for w in self.started)


@pytest.fixture
def workers(env: WorkflowEnvironment, tmp_path: Path) -> Iterator[Workers]:
    queue = f"varia-scale-{uuid.uuid4().hex[:8]}"
    started = Workers(env.client.service_client.config.target_host, queue, tmp_path)
    yield started
    started.close()


async def rendering_on(client: Client, job_id: str) -> tuple[str, str, int] | None:
    """(activity id, worker identity, FFmpeg pid) of a render whose FFmpeg is running."""
    description = await client.get_workflow_handle(job_id).describe()
    for pending in description.raw_description.pending_activities:
        if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
            continue
        payloads = list(pending.heartbeat_details.payloads)
        if pending.activity_type.name != names.RENDER or not payloads:
            continue
        [beat] = await client.data_converter.decode(payloads[-1:], [RenderHeartbeat])
        alive = (
            bool(beat.pid and beat.pid_create_time)
            and ProcessIdentity(beat.pid or 0, beat.pid_create_time or 0.0).is_alive()
        )
        if alive:
            return pending.activity_id, pending.last_worker_identity, beat.pid or 0
    return None


async def render_starts(client: Client, job_id: str) -> list[tuple[str, str, int]]:
    """(activity id, worker identity, attempt) of every render start the history recorded."""
    scheduled: dict[int, str] = {}
    starts = []
    async for event in client.get_workflow_handle(job_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == names.RENDER:
                scheduled[event.event_id] = attrs.activity_id
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in scheduled:
                activity_id = scheduled[started.scheduled_event_id]
                starts.append((activity_id, started.identity, started.attempt))
    return starts


def health(workers: Workers, identity: str) -> int:
    env = workers.env | {"VARIA_WORKER_IDENTITY": identity}
    command = [sys.executable, "-m", "varia.health"]
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


async def test_job_spreads_over_two_workers_and_survives_one_killed(
    env: WorkflowEnvironment, workers: Workers, tmp_path: Path
) -> None:
    client = env.client
    clip = make_clip(tmp_path / "clip.mp4", seconds=3)
    queue = workers.env["VARIA_TASK_QUEUE"]
    pool = {name: workers.start(name) for name in ("worker-a", "worker-b")}

    async def both_polling() -> bool:
        return set(pool) <= await poller_identities(client, queue)

    await wait_for(both_polling, timeout_s=60, what="both workers to poll the task queue")
    # the container health check sees each worker by its identity
    assert await asyncio.to_thread(health, workers, "worker-a") == 0
    assert await asyncio.to_thread(health, workers, "nobody") == 1

    job_id = f"scale-{uuid.uuid4().hex[:8]}"
    out_dir = tmp_path / "out"
    request = {
        "inputs": [str(clip)],
        "variations": 4,
        "output_dir": str(out_dir),
        "seed": 3,
        "concurrency": 2,
    }
    handle = await start_job(client, queue, job_id, request)
    try:
        activity_id, identity, ffmpeg_pid = await wait_for(
            lambda: rendering_on(client, job_id), timeout_s=60, what="a render with FFmpeg"
        )
        victim = pool[identity]
        survivor = next(name for name in pool if name != identity)
        assert victim.identity.send(signal.SIGKILL)
        await asyncio.to_thread(victim.process.wait, 15)
        await wait_for(
            lambda: not any(p.pid == ffmpeg_pid for p in processes_mentioning(job_id)),
            timeout_s=15,
            what="the killed worker's FFmpeg to die with it",
        )

        result = await asyncio.wait_for(handle.result(), timeout=120)
    except BaseException:
        print(workers.logs())
        raise

    assert (result.state, result.total, result.completed, result.failed) == (
        "completed",
        4,
        4,
        0,
    )
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert sorted(o["variation"] for o in manifest["outputs"]) == [0, 1, 2, 3]
    assert processes_mentioning(job_id) == []

    starts = await render_starts(client, job_id)
    # the killed worker took a render (seen running on it); the survivor finished every render,
    # including a later attempt of the one that was running on the killed worker
    assert {activity for activity, _, _ in starts} == {
        names.render_activity_id(0, v) for v in range(4)
    }
    identities = {who for _, who, _ in starts}
    assert survivor in identities and identities <= set(pool), starts
    assert (activity_id, survivor) in {(a, who) for a, who, attempt in starts if attempt > 1}
    assert pool[survivor].process.poll() is None, "the survivor keeps running"
