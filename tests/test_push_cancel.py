"""Pushed cancels: a cancel reaches the render through the worker's own queue, and still
arrives through the heartbeat path when that push is lost or off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from tests.conftest import Clips
from tests.helpers import (
    assert_manifest_matches_disk,
    processes_mentioning,
    start_by_name,
    wait_for,
)
from varia import names, stops
from varia.config import Settings
from varia.errors import STOPPED_FOR_CANCEL
from varia.ffmpeg import runner
from varia.models import JobRequest, JobResult, StopRenders
from varia.worker import build_worker

Handle = WorkflowHandle[Any, JobResult]


def _request(clips: Clips, out_dir: Path) -> JobRequest:
    return JobRequest(
        inputs=[str(clips.long)], variations=1, output_dir=str(out_dir), concurrency=1, threads=1
    )


async def _start_and_wait_rendering(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path
) -> Handle:
    """Start a one-render job of the 20 s clip; return once FFmpeg runs and has opened its
    partial output (a loaded box may start FFmpeg well before it writes). The render has
    sent no heartbeat yet: its first comes half a throttle after FFmpeg starts."""
    request = _request(clips, out_dir)
    handle = await start_by_name(
        client,
        settings.task_queue,
        job_id,
        request.inputs,
        request.variations,
        request.output_dir,
        concurrency=1,
        threads=1,
    )

    partial = out_dir / job_id / names.temp_name("long_clip_v000.mp4")

    def rendering() -> bool:
        return partial.exists() and processes_mentioning(str(partial)) != []

    await wait_for(rendering, what="FFmpeg to run and open its partial output")
    return handle


async def _cancel_and_check(handle: Handle, job_dir: Path) -> list[Any]:
    """Cancel; the job must end CANCELED, no FFmpeg left, manifest whole. Returns events."""
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert processes_mentioning(str(job_dir)) == []
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "cancelled" and manifest["outputs"] == []
    assert names.temp_name("long_clip_v000.mp4") in manifest["removed"]
    return [event async for event in handle.fetch_history_events()]


def _activity_events(events: list[Any], kind: str, name: str) -> list[Any]:
    scheduled = {
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == name
    }
    found = []
    for event in events:
        if event.event_type != getattr(EventType, f"EVENT_TYPE_ACTIVITY_TASK_{kind}"):
            continue
        attrs = getattr(event, f"activity_task_{kind.lower()}_event_attributes")
        own_id = event.event_id if kind == "SCHEDULED" else attrs.scheduled_event_id
        if own_id in scheduled:
            found.append(attrs)
    return found


async def test_cancel_is_pushed_to_the_render(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path
) -> None:
    """The heartbeat path is 5 s slow here: the push is what stops FFmpeg. The render has
    sent no heartbeat: its worker identity names the queue."""
    slow_beats = settings.model_copy(update={"heartbeat_throttle_s": 5.0})
    async with build_worker(client, slow_beats) as worker:
        assert worker.stop is not None
        handle = await _start_and_wait_rendering(client, slow_beats, job_id, clips, out_dir)
        events = await _cancel_and_check(handle, out_dir / job_id)
    [push] = _activity_events(events, "SCHEDULED", names.STOP_RENDERS)
    assert push.task_queue.name == worker.stop.task_queue  # its worker's own queue
    [pushed] = _activity_events(events, "COMPLETED", names.STOP_RENDERS)
    [found] = await client.data_converter.decode(pushed.result.payloads, [list[str]])
    assert found == [names.render_activity_id(0, 0)]  # the push reached the render while it ran
    [failed] = _activity_events(events, "FAILED", names.RENDER)
    assert failed.failure.application_failure_info.type == STOPPED_FOR_CANCEL
    assert _activity_events(events, "CANCELED", names.RENDER) == []


async def test_a_render_the_first_push_missed_is_pushed_again(
    client: Client,
    settings: Settings,
    job_id: str,
    clips: Clips,
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A push that reaches the worker before the render is running there finds nothing (a
    render dispatched just before the cancel). The first push here finds nothing; once it has
    replied, the workflow pushes again to the render still running, and that push stops it.
    Heartbeats are 30 s apart here, so the heartbeat path cannot be what stops it."""
    stop = stops.RenderRegistry.stop
    calls: list[list[str]] = []

    def first_finds_nothing(registry: stops.RenderRegistry, *args: Any) -> list[str]:
        calls.append(list(args[2]))
        return [] if len(calls) == 1 else stop(registry, *args)

    monkeypatch.setattr(stops.RenderRegistry, "stop", first_finds_nothing)
    slow_beats = settings.model_copy(update={"heartbeat_throttle_s": 60.0})
    async with build_worker(client, slow_beats):
        handle = await _start_and_wait_rendering(client, slow_beats, job_id, clips, out_dir)
        events = await _cancel_and_check(handle, out_dir / job_id)
    render = names.render_activity_id(0, 0)
    assert calls == [[render], [render]]
    replies = [
        (await client.data_converter.decode(done.result.payloads, [list[str]]))[0]
        for done in _activity_events(events, "COMPLETED", names.STOP_RENDERS)
    ]
    assert replies == [[], [render]]
    [failed] = _activity_events(events, "FAILED", names.RENDER)
    assert failed.failure.application_failure_info.type == STOPPED_FOR_CANCEL


async def test_cancel_arrives_when_the_push_is_lost(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path
) -> None:
    """Renders' stop queue is one that nobody polls: the heartbeat path delivers the cancel."""
    quick_beats = settings.model_copy(update={"heartbeat_throttle_s": 0.5})
    varia_worker = build_worker(client, quick_beats)
    assert varia_worker.stop is not None
    async with varia_worker.main, varia_worker.render:  # the stop queue's is never started
        handle = await _start_and_wait_rendering(client, quick_beats, job_id, clips, out_dir)
        events = await _cancel_and_check(handle, out_dir / job_id)
    [push] = _activity_events(events, "SCHEDULED", names.STOP_RENDERS)  # tried
    assert push.task_queue.name == varia_worker.stop.task_queue
    assert _activity_events(events, "STARTED", names.STOP_RENDERS) == []  # never delivered
    assert len(_activity_events(events, "CANCELED", names.RENDER)) == 1  # the SDK's cancel


async def test_cancel_arrives_with_push_turned_off(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path
) -> None:
    """Before the render's first heartbeat the cancel path cannot tell that its worker polls
    no stop queue: it may push to the one the identity gives, which nobody polls; once the
    render has heartbeated (details without a queue) nothing is pushed."""
    off = settings.model_copy(update={"push_cancel": False, "heartbeat_throttle_s": 0.5})
    async with build_worker(client, off) as worker:
        assert worker.stop is None
        handle = await _start_and_wait_rendering(client, off, job_id, clips, out_dir)
        events = await _cancel_and_check(handle, out_dir / job_id)
    assert len(_activity_events(events, "SCHEDULED", names.STOP_RENDERS)) <= 1
    assert _activity_events(events, "STARTED", names.STOP_RENDERS) == []
    assert len(_activity_events(events, "CANCELED", names.RENDER)) == 1


async def test_a_cancel_in_a_renders_first_moments_is_still_pushed(
    client: Client,
    settings: Settings,
    job_id: str,
    clips: Clips,
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The render has started but neither spawned FFmpeg nor heartbeated when the workflow
    reads the stop queues: its worker identity names the queue, and the push stops it."""
    may_spawn = asyncio.Event()
    real_spawn, real_read = runner.spawn, stops.render_stop_queues
    read: list[dict[str, list[str]]] = []

    async def spawn_when_allowed(argv: list[str], **kwargs: Any) -> Any:
        await may_spawn.wait()
        return await real_spawn(argv, **kwargs)

    async def read_then_allow(*args: Any) -> dict[str, list[str]]:
        queues = await real_read(*args)
        read.append(queues)
        may_spawn.set()  # the cancel path has read the queues: now FFmpeg may start
        return queues

    monkeypatch.setattr(runner, "spawn", spawn_when_allowed)
    monkeypatch.setattr(stops, "render_stop_queues", read_then_allow)
    slow_beats = settings.model_copy(update={"heartbeat_throttle_s": 5.0})
    async with build_worker(client, slow_beats) as worker:
        assert worker.stop is not None
        request = _request(clips, out_dir)
        handle = await start_by_name(
            client, slow_beats.task_queue, job_id, request.inputs, 1, request.output_dir
        )

        async def render_started() -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            return any(
                p.activity_type.name == names.RENDER
                and p.state == started
                and not p.heartbeat_details.payloads
                for p in pending
            )

        await wait_for(render_started, what="the render to start (its FFmpeg held back)")
        events = await _cancel_and_check(handle, out_dir / job_id)
    render_id = names.render_activity_id(0, 0)
    assert read == [{worker.stop.task_queue: [render_id]}]
    [push] = _activity_events(events, "SCHEDULED", names.STOP_RENDERS)
    assert push.task_queue.name == worker.stop.task_queue
    [aimed] = await client.data_converter.decode(push.input.payloads, [StopRenders])
    assert aimed.activity_ids == [render_id]


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_a_workers_stop_queue_follows_from_its_identity(first: str, second: str) -> None:
    """Anyone who knows a render's worker identity names the queue that worker polls."""
    queue = stops.stop_queue_name("jobs", first)
    assert queue == stops.stop_queue_name("jobs", first)
    assert queue.startswith("jobs-stop-") and len(queue) == len("jobs-stop-") + 12
    assert (queue == stops.stop_queue_name("jobs", second)) == (first == second)
    assert queue != stops.stop_queue_name("other", first)


async def test_a_worker_polls_the_stop_queue_its_identity_gives(
    client: Client, settings: Settings
) -> None:
    named = build_worker(client, settings, identity="render-host-7").stop
    other = settings.model_copy(update={"task_queue": f"{settings.task_queue}-other"})
    unnamed = build_worker(client, other).stop  # the SDK's default identity, pid@host
    assert named is not None and unnamed is not None
    assert named.task_queue == stops.stop_queue_name(settings.task_queue, "render-host-7")
    assert unnamed.task_queue == stops.stop_queue_name(other.task_queue, stops.default_identity())
