"""A reset keeps the execution chain, so it keeps what the chain finished: a run started by
`temporal workflow reset` knows none of the earlier run's outputs, and drained or cancelled
before its renders adopt them, its cleanup must not delete them (found by an operator's
review: a drained job reset to its first workflow task re-applies the drain and lost both
outputs)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment

from tests.conftest import Clips
from tests.helpers import (
    Job,
    assert_manifest_matches_disk,
    query_progress,
    read_manifest,
    render_task,
    wait_for,
)
from varia import media, names
from varia.activities import JobActivities
from varia.cleanup import clean_up_job
from varia.clips import make_clip
from varia.config import Settings
from varia.jobdir import open_job_dir
from varia.models import CleanupRequest, JobResult, MediaInfo

JOB = "job-reset"


def outputs_on_disk(job_dir: Path) -> dict[str, str]:
    """{output name: sha256} of the job's videos."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in job_dir.glob("*.mp4")
    }


async def reset_to_first_task(client: Client, job_id: str, run_id: str) -> str:
    """`temporal workflow reset --type FirstWorkflowTask`: the new run's id."""
    history = await client.get_workflow_handle(job_id, run_id=run_id).fetch_history()
    first_done = next(
        event.event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    reply = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=job_id, run_id=run_id),
            reason="test: reset to the first workflow task",
            workflow_task_finish_event_id=first_done,
            request_id=str(uuid.uuid4()),
        )
    )
    return reply.run_id


async def test_a_drained_job_reset_to_its_first_task_keeps_the_outputs_it_had(
    job: Job, clips: Clips
) -> None:
    handle = await job.start([clips.short], 3, concurrency=1)
    await wait_for(lambda: _completed_at_least(handle, 1), what="a finished render", timeout_s=120)
    await handle.execute_update(names.DRAIN_UPDATE)
    first = await handle.result()
    assert first.state == "drained" and first.completed >= 1
    kept = outputs_on_disk(job.dir)
    assert len(kept) == first.completed
    first_run = handle.result_run_id or ""

    new_run = await reset_to_first_task(job.client, job.id, first_run)
    again: JobResult = await job.client.get_workflow_handle(
        job.id, run_id=new_run, result_type=JobResult
    ).result()

    assert again.state == "drained"  # the reset re-applied the drain: no render ran again
    assert outputs_on_disk(job.dir) == kept  # every finished output is still there, unchanged
    manifest = assert_manifest_matches_disk(job.dir)
    assert sorted(entry["path"] for entry in manifest["outputs"]) == sorted(kept)
    assert not set(manifest["removed"]) & set(kept)
    assert again.completed == len(kept)


async def _completed_at_least(handle: WorkflowHandle[Any, JobResult], count: int) -> bool:
    progress = await query_progress(handle)
    return progress.completed >= count


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> MediaInfo:
    clip = make_clip(tmp_path_factory.mktemp("reset") / "src.mp4", seconds=1, size="160x120")
    return media.probe(str(clip))


async def test_cleanup_keeps_what_an_earlier_manifest_lists_only_while_it_is_that_file(
    source: MediaInfo, tmp_path: Path
) -> None:
    job_dir = open_job_dir(tmp_path, JOB)
    render = JobActivities(Settings()).render
    results = [
        await ActivityEnvironment().run(render, render_task(source, job_dir, variation=v))
        for v in (0, 1, 2)
    ]
    first = CleanupRequest(
        job_id=JOB, job_dir=str(job_dir), state="completed", inputs=[source.path],
        stems=["src"], variations=3, seed=0, results=results, failed=0,
    )  # fmt: skip
    clean_up_job(first)
    listed = {entry["path"] for entry in read_manifest(job_dir)["outputs"]}
    assert listed == {r.path for r in results}

    changed, renamed = results[1].path, results[2].path
    with open(job_dir / changed, "ab") as handle:
        handle.write(b"\0")  # no longer the file the manifest vouches for
    manifest = read_manifest(job_dir)
    manifest["outputs"][2]["path"] = "elsewhere.mp4"  # listed under a name the job never plans
    (job_dir / "elsewhere.mp4").write_bytes((job_dir / renamed).read_bytes())
    (job_dir / names.MANIFEST_NAME).write_text(json.dumps(manifest))

    reset_run = first.model_copy(update={"state": "drained", "results": []})
    result = clean_up_job(reset_run)

    after = read_manifest(job_dir)
    assert [entry["path"] for entry in after["outputs"]] == [results[0].path]
    assert (job_dir / results[0].path).exists()  # kept: still the file it was
    assert changed in after["removed"] and renamed in after["removed"]  # swept, as before
    assert "elsewhere.mp4" in after["foreign"]  # not the job's name: left alone, not listed
    assert result.completed == 1
    assert_manifest_matches_disk(job_dir)
