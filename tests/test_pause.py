"""Pause and resume: the job's own `pause`/`resume` updates, and Temporal's activity pause of
a single render; FFmpeg stopped by the stages, no partial left, nothing rendered twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import (
    Job,
    assert_manifest_matches_disk,
    processes_mentioning,
    render_heartbeats,
    start_job,
    wait_for,
    wait_rendering,
)
from tests.test_cli import cli_env, varia
from varia import names
from varia.client.errors import NotPausable
from varia.client.jobs import Jobs
from varia.config import Settings, render_task_queue
from varia.errors import UPDATE_REFUSED
from varia.models import JobRequest, JobResult, Progress, RenderResult, RenderTask
from varia.processes import ProcessIdentity
from varia.search_attributes import VARIA_STATE
from varia.server import temporal_binary
from varia.worker import build_job_worker


async def running_ffmpeg(client: Client, job_id: str) -> list[ProcessIdentity]:
    beats = await render_heartbeats(client, job_id)
    return [
        ProcessIdentity(b.pid, b.pid_create_time)
        for b in beats.values()
        if b.pid and b.pid_create_time and b.percent > 0
    ]


async def scheduled(
    handle: WorkflowHandle[object, JobResult], activity_type: str = names.RENDER
) -> Counter[str]:
    """How often the job scheduled each activity id of `activity_type`."""
    return Counter(
        [
            event.activity_task_scheduled_event_attributes.activity_id
            async for event in handle.fetch_history_events()
            if event.activity_task_scheduled_event_attributes.activity_type.name == activity_type
        ]
    )


def partials(job_dir: Path) -> list[str]:
    return sorted(p.name for p in job_dir.iterdir() if names.parse_temp_name(p.name))


async def test_pause_then_resume_renders_each_variation_once(paced_job: Job, clips: Clips) -> None:
    # renders last as long as their clip: the long ones surely run when the pause arrives
    client, settings = paced_job.client, paced_job.settings
    job_id, job_dir = paced_job.id, paced_job.dir
    handle = await paced_job.start([clips.short, clips.long], 2, concurrency=2, threads=1)
    # both short variations finished, both long ones rendering
    await wait_for(
        lambda: (job_dir / "short_v001.mp4").exists() and (job_dir / "short_v000.mp4").exists(),
        what="the short variations",
    )
    await wait_rendering(client, job_id, at_least=2)
    ffmpeg = await running_ffmpeg(client, job_id)
    env = cli_env(settings.temporal_address, settings.task_queue)

    paused = await varia(env, "pause", job_id, "--json")
    assert paused.code == 0, paused.err
    assert paused.json()["state"] == "paused"
    assert not any(identity.is_alive() for identity in ffmpeg)
    assert partials(job_dir) == []  # the stopped renders' partial files are gone
    description = await handle.describe()
    assert list(description.raw_description.pending_activities) == []  # no worker slot held
    assert description.typed_search_attributes.get(VARIA_STATE) == "paused"
    listed = await varia(env, "list", "--state", "paused", "--json")
    assert job_id in [row["job_id"] for row in listed.json()["jobs"]]
    progress = await handle.query(names.PROGRESS_QUERY, result_type=Progress)
    assert (progress.state, progress.completed, progress.running) == ("paused", 2, 0)
    again = await varia(env, "pause", job_id)  # idempotent: already paused
    assert again.code == 0 and "paused" in again.out

    resumed = await varia(env, "resume", job_id, "--json")
    assert resumed.code == 0, resumed.err
    assert resumed.json()["state"] in ("running", "completed")
    result = await handle.result()
    assert (result.state, result.completed) == ("completed", 4)
    assert_manifest_matches_disk(job_dir)
    renders = await scheduled(handle)
    # the finished short ones ran once; the long ones the pause stopped, again from scratch
    expected = {(0, 0): 1, (0, 1): 1, (1, 0): 2, (1, 1): 2}
    assert {key: renders[names.render_activity_id(*key)] for key in expected} == expected
    # the pause was pushed to the one worker's stop queue, like a cancel
    assert sum((await scheduled(handle, names.STOP_RENDERS)).values()) == 1
    assert processes_mentioning(job_id) == []

    refused = await varia(env, "resume", job_id)
    assert refused.code == 2 and "completed" in refused.err


async def test_cancel_of_a_paused_job_cancels_it_cleanly(paced_job: Job, clips: Clips) -> None:
    handle = await paced_job.start_rendering([clips.long], 2)
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # a caller can match its type
        await handle.execute_update(names.RESUME_UPDATE, result_type=Progress)
    assert isinstance(refused.value.cause, ApplicationError)
    assert (refused.value.cause.type, refused.value.cause.non_retryable) == (UPDATE_REFUSED, True)
    assert "not paused; there is nothing to resume" in refused.value.cause.message
    progress = await handle.execute_update(names.PAUSE_UPDATE, result_type=Progress)
    assert progress.state == "paused" and progress.paused
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    closed = await handle.query(names.PROGRESS_QUERY, result_type=Progress)
    assert (closed.state, closed.paused) == ("cancelled", False)  # no longer paused: ended
    manifest = assert_manifest_matches_disk(paced_job.dir)
    assert (manifest["state"], manifest["completed"]) == ("cancelled", 0)
    assert partials(paced_job.dir) == []
    with pytest.raises(NotPausable, match="is cancelled; there is nothing to pause"):
        await Jobs(paced_job.client, paced_job.settings).pause(paced_job.id)


async def _temporal(settings: Settings, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        "--address",
        settings.temporal_address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out + err).decode()


async def test_temporal_activity_pause_stops_ffmpeg_and_unpause_renders_from_scratch(
    paced_job: Job, clips: Clips
) -> None:
    handle = await paced_job.start_rendering([clips.long], 1)
    [ffmpeg] = await running_ffmpeg(paced_job.client, paced_job.id)
    job_dir, settings = paced_job.dir, paced_job.settings
    target = ("--workflow-id", paced_job.id, "--activity-id", names.render_activity_id(0, 0))

    await _temporal(settings, "activity", "pause", *target)
    await wait_for(lambda: not ffmpeg.is_alive(), timeout_s=30, what="FFmpeg to stop")
    await wait_for(lambda: partials(job_dir) == [], timeout_s=30, what="the partial to go")

    async def paused_and_idle() -> bool:
        description = await handle.describe()
        [pending] = description.raw_description.pending_activities
        return bool(
            pending.paused and pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        )

    await wait_for(paused_and_idle, what="the render to wait paused")
    assert processes_mentioning(paced_job.id) == []

    await _temporal(settings, "activity", "unpause", *target)
    result = await handle.result()
    assert (result.state, result.completed) == ("completed", 1)
    assert_manifest_matches_disk(job_dir)
    assert partials(job_dir) == []
    assert processes_mentioning(paced_job.id) == []


async def test_drain_of_a_paused_job_ends_it_drained(paced_job: Job, clips: Clips) -> None:
    handle = await paced_job.start_rendering([clips.long], 2)
    await handle.execute_update(names.PAUSE_UPDATE, result_type=Progress)
    await handle.execute_update(names.DRAIN_UPDATE, result_type=Progress)
    result = await handle.result()
    assert (result.state, result.completed) == ("drained", 0)
    assert assert_manifest_matches_disk(paced_job.dir)["state"] == "drained"
    assert partials(paced_job.dir) == []


async def test_a_pause_whose_renders_all_finish_anyway_lets_the_job_complete(
    client: Client, settings: Settings, job_id: str, out_dir: Path, clips: Clips
) -> None:
    """A pause that arrives while the last render finishes: the render is kept (completion
    wins), and nothing is left to pause. The job completes; it sat `paused` at 100 % with no
    manifest until someone resumed it (found by an attacker's review)."""
    entered, finish = asyncio.Event(), asyncio.Event()

    @activity.defn(name=names.RENDER)
    async def render_that_ignores_the_pause(task: RenderTask) -> RenderResult:
        entered.set()
        await finish.wait()  # no heartbeat: the pause's cancel never reaches it
        (Path(task.job_dir) / task.output_name).write_bytes(b"done")
        return RenderResult(
            input_index=task.input_index,
            variation=task.variation,
            path=task.output_name,
            bytes=4,
            duration_s=0.0,
        )

    renders = Worker(
        client,
        task_queue=render_task_queue(settings.task_queue),
        activities=[render_that_ignores_the_pause],
    )
    async with build_job_worker(client, settings), renders:
        request = JobRequest(inputs=[str(clips.short)], variations=1, output_dir=str(out_dir))
        handle = await start_job(client, settings.task_queue, job_id, request)
        await asyncio.wait_for(entered.wait(), timeout=60)
        await handle.start_update(names.PAUSE_UPDATE, wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        finish.set()
        result = await asyncio.wait_for(handle.result(), timeout=60)
    assert (result.state, result.completed) == ("completed", 1)
    assert (out_dir / job_id / names.MANIFEST_NAME).exists()
