"""What an operator sees in the Web UI, checked through the same APIs the UI reads.

A running job: heartbeat details with live figures, the workflow's current details and static
summary, a summary per render activity, and varia's search attributes. A namespace without
those attributes: the worker warns, and jobs still run to the end.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import paced_ffmpeg, render_heartbeats, wait_for
from varia import names
from varia.client.connection import connect
from varia.client.jobs import Jobs
from varia.client.requests import job_summary
from varia.config import Settings
from varia.models import JobRequest
from varia.recipes import default_seed
from varia.search_attributes import VARIA_COMPLETED, VARIA_STATE, VARIA_TOTAL
from varia.worker import VariaWorker, build_worker, warn_if_search_attributes_missing


@pytest_asyncio.fixture
async def default_beats_worker(
    client: Client, settings: Settings, tmp_path: Path
) -> AsyncIterator[VariaWorker]:
    """The paced worker (`tests.conftest.paced_worker`) at the default heartbeat throttle."""
    default_throttle = Settings.model_fields["heartbeat_throttle_s"].default
    paced = settings.model_copy(
        update={"ffmpeg": str(paced_ffmpeg(tmp_path)), "heartbeat_throttle_s": default_throttle}
    )
    async with build_worker(client, paced) as running:
        yield running


async def test_running_job_shows_live_progress_details_and_attributes(
    client: Client,
    default_beats_worker: Worker,
    settings: Settings,
    clips: Clips,
    out_dir: Path,
    job_id: str,
) -> None:
    """At the default heartbeat throttle (5 s; other tests beat faster). The paced worker's
    first render lasts about 20 s: it is surely still running, with its second render queued
    behind it, when its heartbeat with figures arrives."""
    request = JobRequest(inputs=[str(clips.long)], variations=2, output_dir=str(out_dir), threads=1)
    await Jobs(client, settings).start(request, job_id)
    handle = client.get_workflow_handle(job_id)

    async def rendering() -> bool:
        beats = await render_heartbeats(client, job_id)
        return any(beat.percent > 0 and beat.fps is not None for beat in beats.values())

    await wait_for(rendering, what="a render heartbeat with figures")
    description = await handle.describe()

    # the pending-activity view: heartbeat details are one JSON object with live figures
    pending_renders = {
        p.activity_id: p
        for p in description.raw_description.pending_activities
        if p.activity_type.name == names.RENDER
    }
    pending = pending_renders[names.render_activity_id(0, 0)]
    details = json.loads(pending.heartbeat_details.payloads[-1].data)
    assert {"percent", "fps", "speed", "eta_s", "pid", "pid_create_time"} <= set(details)
    assert details["percent"] > 0 and details["output"] == "long_clip_v000.mp4"
    assert details["recipe"].startswith("zoom ") and "crf " in details["recipe"]
    assert details["temp"] == str(out_dir / job_id / names.temp_name("long_clip_v000.mp4"))
    for key in ("eta_s", "speed", "fps"):  # rounded for people, not 8.332465207910097
        assert details[key] is None or len(repr(details[key]).split(".")[-1]) <= 2

    # the workflow's static summary and its current details (markdown)
    seeded = request.model_copy(update={"seed": default_seed(job_id)})  # start_job derives it
    assert await description.static_summary() == job_summary(seeded)
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "**running** · 0/2 done" in metadata.current_details
    assert "1 running" in metadata.current_details and "1 queued" in metadata.current_details
    assert "rendering `long_clip_v000.mp4`" in metadata.current_details
    assert "long_clip_v001.mp4" not in metadata.current_details, "queued, not rendering"

    # the next render (render-ahead) waits for the slot, and its details say so
    async def queued_beat() -> dict[str, Any] | None:
        beats = await render_heartbeats(client, job_id)
        beat = beats.get(names.render_activity_id(0, 1))
        return beat.model_dump() if beat is not None and beat.waiting_for_slot == 0 else None

    queued = await wait_for(queued_beat, what="the queued render to say it waits for slot 0")
    assert queued["output"] == "long_clip_v001.mp4" and queued["pid"] is None

    # varia's search attributes, for filtering in the UI and `varia list`
    attributes = description.typed_search_attributes
    assert attributes.get(VARIA_STATE) == "running"
    assert (attributes.get(VARIA_COMPLETED), attributes.get(VARIA_TOTAL)) == (0, 2)

    # each render activity has a summary naming its output and recipe
    summaries = [
        json.loads(event.user_metadata.summary.data)
        async for event in handle.fetch_history_events()
        if event.activity_task_scheduled_event_attributes.activity_type.name == names.RENDER
    ]
    assert summaries and summaries[0].startswith("long_clip_v000.mp4: zoom ")

    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()


async def test_namespace_without_search_attributes_warns_and_still_runs(
    client: Client,
    settings: Settings,
    clips: Clips,
    out_dir: Path,
    job_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    namespace = f"varia-bare-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    bare = settings.model_copy(update={"temporal_namespace": namespace})
    bare_client = await connect(bare)

    with caplog.at_level(logging.WARNING, logger="varia.worker"):
        present = await warn_if_search_attributes_missing(bare_client, namespace)
    assert present == []
    [warning] = [r.getMessage() for r in caplog.records if r.name == "varia.worker"]
    assert "lacks search attributes VariaState, VariaCompleted, VariaTotal" in warning
    assert f"temporal operator search-attribute create --namespace {namespace}" in warning

    async with build_worker(bare_client, bare):
        request = JobRequest(inputs=[str(clips.short)], variations=1, output_dir=str(out_dir))
        jobs = Jobs(bare_client, bare)
        await jobs.start(request, job_id)
        result = await jobs.result(job_id)
        handle = bare_client.get_workflow_handle(job_id)
        assert (result.state, result.completed) == ("completed", 1)
        assert (await handle.describe()).typed_search_attributes.get(VARIA_STATE) is None

        # status and list fall back to the workflow's result and status
        status = await jobs.status(job_id)
        assert (status.state, status.outputs, status.failed) == ("completed", 1, 0)
        rows = await jobs.list(state="completed")
    assert [row.job_id for row in rows] == [job_id]
