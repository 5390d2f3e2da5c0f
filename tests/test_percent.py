"""The job's real percent: finished variations plus the running renders' coarse fractions,
the same number in the `progress` query, the current details, `VariaPercent` and the CLI.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import wait_for
from tests.test_cli import cli_env, varia
from varia import names
from varia.client.jobs import Jobs
from varia.clips import make_clip
from varia.config import Settings
from varia.models import JobRequest, Progress
from varia.percent import PROGRESS_STEPS, next_step, weighted_percent
from varia.search_attributes import VARIA_COMPLETED, VARIA_PERCENT, VARIA_STATE, VARIA_TOTAL
from varia.worker import build_worker
from varia.workflows import UPSERT_GAP_S

fractions = st.lists(st.floats(0.0, 1.0), max_size=8)


@hypothesis_settings(deadline=None)  # a loaded CI machine is slow; no timing here
@given(total=st.integers(0, 20_000), finished=st.integers(0, 20_000), running=fractions)
def test_weighted_percent_is_bounded_and_counts_running_work(
    total: int, finished: int, running: list[float]
) -> None:
    finished = min(finished, total)
    running = running[: max(0, total - finished)]
    percent = weighted_percent(total, finished, running)
    assert 0.0 <= percent <= 100.0
    if total:
        plain = round(100.0 * finished / total, 1)
        assert percent >= plain  # running work only ever adds
        assert (percent == 100.0) == (finished == total)  # unfinished work never shows 100
    else:
        assert percent == 0.0


@hypothesis_settings(deadline=None)  # a loaded CI machine is slow; no timing here
@given(sent=st.sampled_from([0.0, *PROGRESS_STEPS]), fraction=st.floats(0.0, 1.0))
def test_steps_are_sent_once_each_and_in_order(sent: float, fraction: float) -> None:
    step = next_step(fraction, sent)
    if step is None:
        assert all(not (sent < s <= fraction) for s in PROGRESS_STEPS)
    else:
        assert step in PROGRESS_STEPS and sent < step <= fraction
        assert next_step(fraction, step) is None  # the same fraction never sends twice


def half_speed_ffmpeg(directory: Path) -> Path:
    """The real FFmpeg reading its input at half its speed: a 20 s clip renders in ~40 s, so
    its progress steps lie ~10 s apart (time enough to read every view between two)."""
    script = directory / "ffmpeg-half-speed"
    real = shlex.quote(Settings().ffmpeg_path())
    script.write_text(f'#!/bin/sh\nexec {real} -readrate 0.5 "$@"\n')
    script.chmod(0o755)
    return script


@pytest_asyncio.fixture
async def paced_worker(
    client: Client, settings: Settings, tmp_path: Path
) -> AsyncIterator[Settings]:
    """A worker whose renders take twice as long as their clip and report every step."""
    paced = settings.model_copy(
        update={"ffmpeg": str(half_speed_ffmpeg(tmp_path)), "progress_min_render_s": 0.0}
    )
    async with build_worker(client, paced):
        yield paced


async def test_percent_is_the_same_in_query_details_attribute_and_cli(
    client: Client, paced_worker: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    settings = paced_worker
    request = JobRequest(
        inputs=[str(clips.short), str(clips.long)], variations=1, output_dir=str(out_dir)
    )
    handle = await Jobs(client, settings).start_handle(request, job_id)
    env = cli_env(settings.temporal_address, settings.task_queue)

    async def query() -> float:
        return (await handle.query(names.PROGRESS_QUERY, result_type=Progress)).percent

    async def snapshot() -> tuple[float, float | None, str, float, float | None] | None:
        """All four views between two equal query answers (no step arrived in between)."""
        try:
            return await views()
        except WorkflowQueryFailedError as err:
            if "TMPRL1101" not in str(err):
                raise
            return None  # on a starved box a workflow task outlasted the SDK's 2 s deadlock check

    async def views() -> tuple[float, float | None, str, float, float | None] | None:
        before = await query()
        if not 50.0 < before < 100.0:
            return None
        description, metadata, status, rows = await asyncio.gather(
            handle.describe(),
            handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata),
            varia(env, "status", job_id, "--json"),
            Jobs(client, settings).list(limit=50),
        )
        if await query() != before:
            return None
        [row] = [r for r in rows if r.job_id == job_id]
        attribute = description.typed_search_attributes.get(VARIA_PERCENT)
        return before, attribute, metadata.current_details, status.json()["percent"], row.percent

    # the short clip is done (50 %) and the long one has reported a step: 62.5, 75 or 87.5 %
    percent, attribute, details, cli, listed = await wait_for(
        snapshot, timeout_s=180, what="a stable percent between 50 and 100"
    )
    assert percent in (62.5, 75.0, 87.5)
    assert attribute == percent
    assert f"· {percent:g}%" in details and "rendering `long_clip_v000.mp4` (" in details
    assert cli == percent

    async def listed_agrees() -> bool:  # visibility lags the upsert a little
        [row] = [r for r in await Jobs(client, settings).list(limit=50) if r.job_id == job_id]
        return row.percent == await query()

    assert listed == percent or await wait_for(listed_agrees, what="varia list's percent")

    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    progress = await handle.query(names.PROGRESS_QUERY, result_type=Progress)
    assert progress.percent == 50.0  # the stopped render's fraction is gone; the kept one counts
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert f"kept 1 · removed 1 · manifest `{out_dir / job_id / 'manifest.json'}`" in (
        metadata.current_details
    )
    assert (progress.manifest, progress.removed) == (str(out_dir / job_id / names.MANIFEST_NAME), 1)


async def test_short_renders_send_no_progress_signals(
    client: Client, worker: Worker, settings: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    request = JobRequest(inputs=[str(clips.short)], variations=2, output_dir=str(out_dir))
    handle = await Jobs(client, settings).start_handle(request, job_id)
    assert (await handle.result()).completed == 2
    signals = await _events(handle, "workflow_execution_signaled_event_attributes")
    assert signals == []  # a 2 s clip renders in far less than VARIA_PROGRESS_MIN_RENDER


async def test_a_queued_render_does_not_count_its_wait_as_render_time(
    client: Client, settings: Settings, clips: Clips, out_dir: Path, job_id: str, tmp_path: Path
) -> None:
    """With render-ahead the second render waits for the first (about 4 s at half speed); a
    projection that counted the wait (4 s + 1 s at its 25 % step: 20 s) would signal; its own
    FFmpeg projects 4 s, under the 12 s minimum."""
    paced = settings.model_copy(
        update={"ffmpeg": str(half_speed_ffmpeg(tmp_path)), "progress_min_render_s": 12.0}
    )
    request = JobRequest(
        inputs=[str(clips.short)], variations=2, concurrency=1, output_dir=str(out_dir)
    )
    async with build_worker(client, paced):
        handle = await Jobs(client, paced).start_handle(request, job_id)
        assert (await handle.result()).completed == 2
    events = [event async for event in handle.fetch_history_events()]
    renders = {
        e.event_id
        for e in events
        if e.activity_task_scheduled_event_attributes.activity_type.name == names.RENDER
    }
    started = sorted(
        e.event_time.ToDatetime()
        for e in events
        if e.activity_task_started_event_attributes.scheduled_event_id in renders
    )
    completed = sorted(
        e.event_time.ToDatetime()
        for e in events
        if e.activity_task_completed_event_attributes.scheduled_event_id in renders
    )
    assert len(started) == 2 and started[1] < completed[0]  # the second was queued meanwhile
    signals = [e for e in events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert signals == []


async def test_a_big_job_upserts_its_percent_at_whole_percents(
    client: Client, worker: Worker, settings: Settings, tmp_path: Path, job_id: str
) -> None:
    """120 variations: VariaCompleted/VariaPercent move when the whole percent does (at most
    100 times, plus the state changes), not after every finished render (the old path: one
    upsert per render, over 120, each a history event). 120 is the least that keeps a clear
    margin above 105; more variations prove no more and cost test time."""
    tiny = make_clip(tmp_path / "tiny.mp4", seconds=0.3, size="64x64", audio=False)
    request = JobRequest(
        inputs=[str(tiny)], variations=120, output_dir=str(tmp_path / "out"), chunk_size=1000
    )
    handle = await Jobs(client, settings).start_handle(request, job_id)
    assert (await handle.result()).completed == 120
    upserts = [
        event
        for event in await _events(handle, "upsert_workflow_search_attributes_event_attributes")
        if VARIA_COMPLETED.name
        in event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    assert 0 < len(upserts) <= 100 + 5, len(upserts)
    attributes = (await handle.describe()).typed_search_attributes
    assert (attributes.get(VARIA_COMPLETED), attributes.get(VARIA_PERCENT)) == (120, 100.0)
    events = [event async for event in handle.fetch_history_events()]
    _assert_progress_upserts_paced(events)
    patches = [e for e in events if e.marker_recorded_event_attributes.marker_name == "core_patch"]
    assert len(patches) == 1  # "upsert-pace" stands for every patch before it


def _assert_progress_upserts_paced(events: list[HistoryEvent]) -> None:
    """Two upserts in a row that leave `VariaState` as it was (progress alone, not the last
    render's) come from workflow tasks at least `UPSERT_GAP_S` of workflow time apart: the time
    a workflow task's code reads is its started event's."""
    task_started, last_state, paced_from = 0.0, None, None
    finished_all = False
    for event in events:
        if event.HasField("workflow_task_started_event_attributes"):
            task_started = event.event_time.ToNanoseconds() / 1e9
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        if VARIA_COMPLETED.name not in fields.indexed_fields:
            continue
        state = json.loads(fields.indexed_fields[VARIA_STATE.name].data)
        completed = json.loads(fields.indexed_fields[VARIA_COMPLETED.name].data)
        total = json.loads(fields.indexed_fields[VARIA_TOTAL.name].data)
        progress_alone = state == last_state and not finished_all
        if progress_alone and completed < total and paced_from is not None:
            assert task_started - paced_from >= UPSERT_GAP_S, (task_started, paced_from)
        finished_all = finished_all or completed == total
        last_state, paced_from = state, task_started


async def _events(handle: WorkflowHandle[Any, Any], attributes: str) -> list[HistoryEvent]:
    """The events of the job's history that carry `attributes`."""
    return [event async for event in handle.fetch_history_events() if event.HasField(attributes)]
