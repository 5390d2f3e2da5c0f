"""Render-ahead (issue 14, "no idle slot"): the next render of a job slot is already scheduled,
so its FFmpeg starts the moment the previous one exits, without waiting for the previous
render's tail or a workflow task; the job's `concurrency` still bounds its FFmpeg, on one
worker and across worker processes; a drain starts none of the queued renders. Real dev
server, real FFmpeg.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Clips
from tests.helpers import (
    assert_manifest_matches_disk,
    ffmpeg_spans,
    most_at_once,
    paced_ffmpeg,
    processes_mentioning,
    query_progress,
    render_heartbeats,
    span_logging_ffmpeg,
    start_job,
    wait_for,
)
from tests.test_scale_out import Workers, render_starts
from varia import activities, names
from varia.client.pollers import poller_identities
from varia.config import Settings, render_task_queue
from varia.models import JobRequest, JobResult, Progress, RenderResult, RenderTask
from varia.worker import build_worker


def _slot_files(job_dir: Path) -> list[str]:
    return sorted(p.name for p in job_dir.iterdir() if p.name.startswith(names.SLOT_PREFIX))


async def test_the_next_ffmpeg_starts_while_the_previous_render_is_still_in_its_tail(
    client: Client,
    settings: Settings,
    job_id: str,
    clips: Clips,
    out_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One slot (concurrency 1): each render's tail (check, commit, measure) is held until the
    next render has started its FFmpeg. Without render-ahead the next render is scheduled only
    once this one completes, so the hold could never end: the renders would fail."""
    script, log = span_logging_ffmpeg(tmp_path)
    job_dir = out_dir / job_id
    variations = 5
    real_commit = activities.commit_output
    held: list[str] = []

    async def commit_once_the_next_runs(
        temp: Path, final: Path, task: RenderTask, argv: list[str]
    ) -> RenderResult:
        if task.variation + 1 < variations:
            name = names.temp_name(f"short_v{task.variation + 1:03d}.mp4")
            await wait_for(
                lambda: log.exists() and name in log.read_text(),
                timeout_s=120,
                what=f"the render after {final.name} to start FFmpeg",
            )
            held.append(final.name)
        return await real_commit(temp, final, task, argv)

    monkeypatch.setattr(activities, "commit_output", commit_once_the_next_runs)
    async with build_worker(client, settings.model_copy(update={"ffmpeg": str(script)})):
        request = JobRequest(
            inputs=[str(clips.short)], variations=variations, output_dir=str(out_dir), seed=5
        )
        result = await (await start_job(client, settings.task_queue, job_id, request)).result()
    assert (result.state, result.completed, result.failed) == ("completed", variations, 0)
    assert sorted(held) == [f"short_v{v:03d}.mp4" for v in range(variations - 1)]
    spans = ffmpeg_spans(log)
    ordered = [spans[str(job_dir / names.temp_name(f"short_v{v:03d}.mp4"))] for v in range(5)]
    assert ordered == sorted(ordered) and most_at_once(ordered) == 1, "one at a time, in order"
    assert_manifest_matches_disk(job_dir)
    assert _slot_files(job_dir) == [], "cleanup removes the slot files"


async def test_the_jobs_concurrency_bounds_its_ffmpeg_and_each_slot_keeps_its_order(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    """Concurrency 2 on a worker with room for 4: FFmpeg of the job never overlaps beyond 2,
    and each render's FFmpeg starts after that of the render it follows in its slot (as the
    workflow scheduled them: the `follows` of each scheduled render's input)."""
    handle, result, spans = await _job_with_ffmpeg_spans(
        client, settings, job_id, clips, out_dir, tmp_path, cap=4, variations=8, concurrency=2
    )
    assert (result.completed, result.failed) == (8, 0)
    assert len(spans) == 8 and most_at_once(spans.values()) <= 2
    tasks: list[RenderTask] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == names.RENDER:
                [task] = await client.data_converter.decode(attrs.input.payloads, [RenderTask])
                tasks.append(task)
    by_order = {task.order: task for task in tasks}
    assert sorted(by_order) == list(range(8)) and {t.slot for t in tasks} == {0, 1}
    followers = [task for task in tasks if task.follows is not None]
    # The first workflow task fills both slots two deep. A render scheduled later follows the
    # one in flight in its slot, or none if both there finished before that workflow task
    # (two renders ending together on a loaded box): so at least 2, at most 6.
    assert 2 <= len(followers) <= 6, "render-ahead queues behind the running render"
    job_dir = out_dir / job_id
    for task in followers:
        before = by_order[task.follows]
        assert before.slot == task.slot and before.order < task.order
    for slot in (0, 1):  # whichever way each was scheduled: one at a time, in order
        in_slot = sorted((t for t in tasks if t.slot == slot), key=lambda t: t.order)
        for before, task in itertools.pairwise(in_slot):
            first = spans[str(job_dir / before.temp_name)]
            then = spans[str(job_dir / task.temp_name)]
            assert first[1] <= then[0], f"{task.output_name} ran before {before.output_name}"
    assert_manifest_matches_disk(job_dir)


async def test_a_drain_starts_none_of_the_queued_renders(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    """The queued render of each slot is cancelled (pushed) at a drain; the running ones
    finish: the job ends with what was done plus what was running when the drain came."""
    paced = settings.model_copy(
        update={"ffmpeg": str(paced_ffmpeg(tmp_path)), "max_concurrent_renders": 4}
    )
    async with build_worker(client, paced):
        handle, seen = await _two_running_two_queued(client, settings, job_id, clips, out_dir, 8)
        assert len(seen.running_variations) == 2
        at_drain = await handle.execute_update(names.DRAIN_UPDATE, result_type=dict)
        await handle.result()
        progress = await query_progress(handle)
    assert progress.state == "drained"
    assert at_drain["running"] <= 2 and at_drain["queued"] <= 2
    assert progress.completed == at_drain["completed"] + at_drain["running"], (
        f"at the drain: {at_drain}; at the end: {progress}"
    )
    assert processes_mentioning(str(out_dir / job_id)) == []
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert len(manifest["outputs"]) == progress.completed


async def test_a_terminate_starts_none_of_the_queued_renders(
    client: Client,
    settings: Settings,
    job_id: str,
    clips: Clips,
    out_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A terminate cancels nothing the workflow could see: each running render learns from its
    heartbeat that the workflow is gone and stops FFmpeg. It then leaves its slot without
    ending its turn, so the render queued behind it starts no FFmpeg for a job nobody waits
    for (it did, 1-2 s after the terminate, found by an operator's review); it stops at its
    own next heartbeat."""
    caplog.set_level(logging.INFO)
    script, log = span_logging_ffmpeg(tmp_path, str(paced_ffmpeg(tmp_path)))
    paced = settings.model_copy(update={"ffmpeg": str(script), "max_concurrent_renders": 4})
    mine = activities.JobActivities(paced)
    async with build_worker(client, paced, activities=mine):
        handle, _ = await _two_running_two_queued(client, settings, job_id, clips, out_dir, 4)
        await wait_for(lambda: len(_started(log)) == 2, what="the two running FFmpeg")
        await handle.terminate(reason="test")
        await wait_for(lambda: len(mine.job_slots) == 0, what="every render of the job to end")
    assert len(_started(log)) == 2, _started(log)  # the queued two never started FFmpeg
    assert processes_mentioning(str(out_dir / job_id)) == []
    failed = [r for r in caplog.records if "Completing activity as failed" in r.getMessage()]
    assert [r for r in failed if r.levelno >= logging.WARNING] == []  # no traceback per render
    stopped = [r.getMessage() for r in caplog.records if r.name == "varia.jobs"]
    assert sum("the job was terminated or timed out" in m for m in stopped) >= 2, stopped


async def _two_running_two_queued(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path, variations: int
) -> tuple[WorkflowHandle[Any, JobResult], Progress]:
    """Start a job of the short clip at concurrency 2; once 2 render and 2 wait, its handle
    and that progress."""
    request = JobRequest(
        inputs=[str(clips.short)], variations=variations, output_dir=str(out_dir), concurrency=2
    )
    handle = await start_job(client, settings.task_queue, job_id, request)

    async def seen() -> Any:
        progress = await query_progress(handle)
        return progress if (progress.running, progress.queued) == (2, 2) else None

    progress: Progress = await wait_for(seen, what="2 renders running, 2 queued")
    return handle, progress


def _started(log: Path) -> list[str]:
    if not log.exists():
        return []
    lines = log.read_text().splitlines()  # renders only, not `ffmpeg -version`
    return [line for line in lines if line.startswith("start ") and line.endswith(".part")]


async def test_one_slot_shared_by_two_worker_processes_runs_one_ffmpeg_at_a_time(
    env: WorkflowEnvironment, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    """A job of concurrency 1 on two `varia worker` processes of one render each: the next
    render lands on the other worker and waits there for the slot's lock and turn, which the
    first holds in the job directory; FFmpeg never overlaps, and both workers render."""
    client = env.client
    address = client.service_client.config.target_host
    workers = Workers(address, f"ahead-{out_dir.parent.name}", tmp_path)
    script, log = span_logging_ffmpeg(tmp_path, workers.env["VARIA_FFMPEG"])
    workers.env["VARIA_FFMPEG"] = str(script)
    job_id = "ahead-two-workers"
    queue = workers.env["VARIA_TASK_QUEUE"]
    try:
        workers.start("w1")
        workers.start("w2")

        async def both_polling() -> bool:
            return {"w1", "w2"} <= await poller_identities(client, render_task_queue(queue))

        await wait_for(both_polling, what="both workers to poll the render queue")
        request = JobRequest(
            inputs=[str(clips.short)], variations=4, output_dir=str(out_dir), concurrency=1
        )
        handle = await start_job(client, queue, job_id, request)
        result = await asyncio.wait_for(handle.result(), 300)
    except BaseException:
        print(workers.logs())
        raise
    finally:
        workers.close()
    assert (result.completed, result.failed) == (4, 0)
    spans = ffmpeg_spans(log)
    assert len(spans) == 4 and most_at_once(spans.values()) == 1
    identities = {identity for _, identity, _ in await render_starts(client, job_id)}
    assert identities == {"w1", "w2"}, "both workers took renders"
    assert_manifest_matches_disk(out_dir / job_id)


async def test_a_cancel_is_pushed_to_the_queued_render_too(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    """The render waiting for its slot names the worker's stop queue as it starts waiting: the
    cancel's push stops it with the running one (the heartbeat path is 5 s slow here), and the
    job closes cancelled with nothing left."""
    slow_beats = settings.model_copy(
        update={"heartbeat_throttle_s": 5.0, "ffmpeg": str(paced_ffmpeg(tmp_path))}
    )
    async with build_worker(client, slow_beats):
        request = JobRequest(
            inputs=[str(clips.long)], variations=3, output_dir=str(out_dir), concurrency=1
        )
        handle = await start_job(client, settings.task_queue, job_id, request)

        async def queued_is_waiting() -> bool:
            beats = await render_heartbeats(client, job_id)
            queued = beats.get(names.render_activity_id(0, 1))
            running = beats.get(names.render_activity_id(0, 0))
            return bool(queued and queued.waiting_for_slot == 0 and running and running.pid)

        await wait_for(queued_is_waiting, what="render 0 running, render 1 waiting for slot 0")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    events = [event async for event in handle.fetch_history_events()]
    pushed = [
        e.activity_task_completed_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    ]
    stopped: list[str] = []
    for attrs in pushed:
        [value] = await client.data_converter.decode(attrs.result.payloads, [object])
        if isinstance(value, list):
            stopped += value
    assert sorted(stopped) == [names.render_activity_id(0, 0), names.render_activity_id(0, 1)]
    assert processes_mentioning(str(out_dir / job_id)) == []
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert (manifest["state"], manifest["outputs"]) == ("cancelled", [])
    assert _slot_files(out_dir / job_id) == []


async def test_a_wide_job_on_a_one_render_worker_completes(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    """Concurrency 24 on a worker capped at 1: the worker is handed renders queued behind ones
    not yet taken (the server does not keep the order scheduled) and parks them; it must keep
    taking renders until it has the ones they wait for. A bound on held renders deadlocked this
    (`benchmarks/fairness.py`; here, within 40 s with the old bound of 3 x the cap). FFmpeg still
    runs one at a time."""
    _, result, spans = await _job_with_ffmpeg_spans(
        client, settings, job_id, clips, out_dir, tmp_path, cap=1, variations=48, concurrency=24
    )
    assert (result.completed, result.failed) == (48, 0)
    assert len(spans) == 48 and most_at_once(spans.values()) == 1
    assert_manifest_matches_disk(out_dir / job_id)


async def _job_with_ffmpeg_spans(
    client: Client,
    settings: Settings,
    job_id: str,
    clips: Clips,
    out_dir: Path,
    tmp_path: Path,
    *,
    cap: int,
    variations: int,
    concurrency: int,
) -> tuple[WorkflowHandle[Any, JobResult], JobResult, dict[str, tuple[float, float]]]:
    """Run a job of the short clip on a worker capped at `cap` renders whose FFmpeg logs its
    spans; its handle, its result and those spans (`ffmpeg_spans`)."""
    script, log = span_logging_ffmpeg(tmp_path)
    spanned = settings.model_copy(update={"ffmpeg": str(script), "max_concurrent_renders": cap})
    async with build_worker(client, spanned):
        request = JobRequest(
            inputs=[str(clips.short)],
            variations=variations,
            output_dir=str(out_dir),
            concurrency=concurrency,
        )
        handle = await start_job(client, settings.task_queue, job_id, request)
        result = await asyncio.wait_for(handle.result(), 300)
    return handle, result, ffmpeg_spans(log)
