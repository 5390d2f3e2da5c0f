"""Renders have a cap of their own (issue 9, defect 6), and a timed-out stop is a cancel.

Renders run on `<queue>-render`, served by a second SDK worker in the same process with
`VARIA_MAX_CONCURRENT_RENDERS` slots; workflows and the light activities (prepare, record,
cleanup) stay on the job's queue. Real dev server, real (paced) FFmpeg.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import (
    assert_manifest_matches_disk,
    paced_ffmpeg,
    processes_mentioning,
    query_progress,
    start_job,
    wait_for,
)
from varia import names
from varia.config import Settings, render_task_queue
from varia.models import JobRequest, RenderResult, RenderTask
from varia.worker import build_job_worker, build_worker


def one_slot(client: Client, task_queue: str, tmp_path: Path) -> Settings:
    return Settings(
        TEMPORAL_ADDRESS=client.service_client.config.target_host,
        VARIA_TASK_QUEUE=task_queue,
        VARIA_MAX_CONCURRENT_RENDERS=1,
        VARIA_FFMPEG=str(paced_ffmpeg(tmp_path)),
        VARIA_STOP_STAGE_TIMEOUT=2.0,
    )


@contextlib.asynccontextmanager
async def counting(fragment: str) -> AsyncIterator[list[int]]:
    """Count the processes whose command line holds `fragment`, at every poll, meanwhile."""
    counts: list[int] = []
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            counts.append(len(processes_mentioning(fragment)))
            await asyncio.sleep(0.02)

    poller = asyncio.create_task(poll())
    try:
        yield counts
    finally:
        stop.set()
        await poller


async def test_defect6_a_worker_capped_at_one_render_never_runs_two_ffmpeg(
    client: Client, task_queue: str, job_id: str, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    worker = build_worker(client, one_slot(client, task_queue, tmp_path))
    async with worker, counting(str(out_dir)) as counts:
        handles = [
            await start_job(
                client,
                task_queue,
                f"{job_id}-{n}",
                JobRequest(
                    inputs=[str(clips.short)],
                    variations=2,
                    output_dir=str(out_dir),
                    concurrency=2,
                    seed=n,
                ),
            )
            for n in range(2)
        ]
        results = [await handle.result() for handle in handles]
    assert [r.completed for r in results] == [2, 2]
    assert max(counts) == 1, f"FFmpeg at once: {sorted(set(counts))}"
    for n in range(2):
        assert_manifest_matches_disk(out_dir / f"{job_id}-{n}")


async def test_defect6_cancelled_job_closes_while_the_only_render_slot_is_busy(
    client: Client, task_queue: str, job_id: str, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    """Job A's long paced renders hold every render slot (and, before the render queue, every
    activity slot); job B, cancelled, still closes cleaned up while A's FFmpeg runs on."""
    busy_dir, cancelled_dir = out_dir / f"{job_id}-a", out_dir / f"{job_id}-b"
    async with build_worker(client, one_slot(client, task_queue, tmp_path)):
        busy = await start_job(
            client,
            task_queue,
            busy_dir.name,
            JobRequest(
                inputs=[str(clips.long)], variations=3, output_dir=str(out_dir), concurrency=3
            ),
        )
        await wait_for(lambda: processes_mentioning(str(busy_dir)), what="A's render to run")
        busy_renders = {p.pid for p in processes_mentioning(str(busy_dir))}
        cancelled = await start_job(
            client,
            task_queue,
            cancelled_dir.name,
            JobRequest(inputs=[str(clips.short)], variations=2, output_dir=str(out_dir)),
        )

        async def b_running() -> bool:
            return (await query_progress(cancelled)).state == "running"

        await wait_for(b_running, what="B to be prepared, its renders queued")
        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError):
            await cancelled.result()
        # B's whole life (prepare, cancel, cleanup) fits inside A's renders: it never waited
        # for one of them to end.
        still = {p.pid for p in processes_mentioning(str(busy_dir))}
        assert busy_renders <= still, "B had to wait for one of A's renders to end"
        assert processes_mentioning(str(cancelled_dir)) == []
        manifest = assert_manifest_matches_disk(cancelled_dir)
        assert (manifest["state"], manifest["outputs"]) == ("cancelled", [])
        await busy.cancel()
        with pytest.raises(WorkflowFailureError):
            await busy.result()
    assert processes_mentioning(str(out_dir)) == []


async def test_a_render_that_times_out_during_a_cancel_counts_as_cancelled(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path
) -> None:
    """A render that stops heartbeating once cancelled (a stuck FFmpeg, a wedged worker) times
    out; the job still ends cancelled with nothing counted as failed."""
    release = asyncio.Event()

    @activity.defn(name=names.RENDER)
    async def unresponsive_render(task: RenderTask) -> RenderResult:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                activity.heartbeat({"percent": 1.0})
                await asyncio.sleep(0.2)
        await release.wait()  # no more heartbeats: the heartbeat timeout fires
        raise asyncio.CancelledError()

    jobs = build_job_worker(client, settings)
    renders = Worker(
        client,
        task_queue=render_task_queue(settings.task_queue),
        activities=[unresponsive_render],
        max_heartbeat_throttle_interval=settings_throttle(settings),
        default_heartbeat_throttle_interval=settings_throttle(settings),
    )
    async with jobs, renders:
        request = JobRequest(inputs=[str(clips.short)], variations=1, output_dir=str(out_dir))
        handle = await start_job(client, settings.task_queue, job_id, request)

        async def rendering() -> bool:
            return (await query_progress(handle)).running == 1

        await wait_for(rendering, what="the render to start")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        release.set()
        progress = await query_progress(handle)
    assert (progress.state, progress.failed, progress.errors) == ("cancelled", 0, [])
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert (manifest["state"], manifest["failed"], manifest["errors"]) == ("cancelled", 0, [])


def settings_throttle(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.heartbeat_throttle_s)
