"""A reset keeps the execution chain, so it keeps what the chain finished: a run started by
`temporal workflow reset` knows none of the earlier run's outputs, and drained or cancelled
before its renders adopt them, its cleanup must not delete them (found by an operator's
review: a drained job reset to its first workflow task re-applies the drain and lost both
outputs). A job run to its end, reset, then terminated is swept by the janitor, which must not
take the earlier run's manifest for the terminated run's own."""

from __future__ import annotations

import hashlib
import json
import shlex
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
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
from varia.client.jobs import Jobs
from varia.clips import make_clip
from varia.config import Settings
from varia.janitor import HAS_MANIFEST, ClosedRun, JanitorReport, JanitorRequest, sweep_run
from varia.janitor_workflow import run_janitor_once
from varia.jobdir import open_job_dir
from varia.manifest_origin import manifest_origin
from varia.models import CleanupRequest, JobRequest, JobResult, MediaInfo
from varia.verify import verify_job_dir
from varia.worker import build_worker

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


def full_disk_ffmpeg(directory: Path, flag: Path) -> Path:
    """The real FFmpeg at native speed (`-re`: a render lasts as long as its clip), except that
    while `flag` exists the render of any variation 1 fails at once as if the disk were full
    (`NoSpace`: not retried, and the job stops there, ending `failed`)."""
    script = directory / "ffmpeg-full-disk"
    real = shlex.quote(Settings().ffmpeg_path())
    script.write_text(
        "#!/bin/sh\nfor last; do :; done\n"
        f'case "$last" in *_v001.mp4.part) if [ -e {shlex.quote(str(flag))} ]; then\n'
        '  echo "Error writing trailer: No space left on device" >&2; exit 228; fi;; esac\n'
        f'exec {real} -re "$@"\n'
    )
    script.chmod(0o755)
    return script


async def test_a_finished_job_reset_then_terminated_gets_its_own_manifest_from_the_janitor(
    bare_job: Job, clips: Clips, tmp_path: Path
) -> None:
    """The reviewer's sequence: a job run to its end (failed, with a manifest), reset to its
    first workflow task, terminated once a re-render has committed, swept with no grace. The
    janitor took the earlier run's manifest for the terminated run's and left its new output
    unlisted, its scratch files behind and the stale manifest in place, for good."""
    job, full = bare_job, tmp_path / "disk-full"
    full.touch()
    ffmpeg = full_disk_ffmpeg(tmp_path, full)
    async with build_worker(job.client, job.settings.model_copy(update={"ffmpeg": str(ffmpeg)})):
        handle = await job.start([clips.short], 6, concurrency=1)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        earlier = read_manifest(job.dir)
        assert (earlier["state"], earlier["run_id"]) == ("failed", handle.result_run_id)
        assert "short_v001.mp4" not in {entry["path"] for entry in earlier["outputs"]}
        full.unlink()  # the disk has room again

        reset_run = await reset_to_first_task(job.client, job.id, handle.result_run_id or "")
        new_output = job.dir / "short_v001.mp4"
        await wait_for(new_output.exists, what="a re-render to commit", timeout_s=120)
        await job.client.get_workflow_handle(job.id).terminate(reason="reviewer")
        unswept = await Jobs(job.client, job.settings).status(job.id)
        assert (unswept.state, unswept.manifest) == ("terminated", None)  # not the earlier run's
        report = await wait_for(
            lambda: _sweep_when_idle(job), what="the renders to let go", poll_s=0.5
        )

        swept = [e for e in [*report.swept, *report.skipped] if e.job_id == job.id]
        assert [(e.action, e.state) for e in swept] == [("swept", "terminated")], (
            swept or f"not swept: {report.already_clean} already had a manifest"
        )
        manifest = assert_manifest_matches_disk(job.dir)
        assert (manifest["state"], manifest["run_id"]) == ("terminated", reset_run)
        kept = {entry["path"] for entry in manifest["outputs"]}
        assert new_output.name in kept
        assert kept >= {entry["path"] for entry in earlier["outputs"]}  # still those files
        assert verify_job_dir(job.dir).problems == []
        hidden = [p.name for p in job.dir.iterdir() if p.name.startswith(".")]
        assert hidden == [names.MARKER_NAME]  # no cell, record, slot or partial file left
        status = await Jobs(job.client, job.settings).status(job.id)
        assert (status.state, status.outputs) == ("terminated", len(kept))

        before = _snapshot(job.dir)
        again = await run_janitor_once(job.client, job.task_queue, JanitorRequest(grace_s=0))
        assert job.id not in {e.job_id for e in [*again.swept, *again.skipped]}
        assert again.already_clean >= 1
        assert _snapshot(job.dir) == before


async def test_a_run_reset_while_it_ran_leaves_the_later_runs_manifest_alone(
    paced_job: Job, clips: Clips
) -> None:
    """The other order: a reset of a running job terminates the run it resets; the new run
    ends with its own manifest, which names a run that started later, so the janitor sweeping
    the terminated run leaves it as it is (guards against replacing every other run's)."""
    job = paced_job
    handle = await job.start([clips.short], 3, concurrency=1)
    await wait_for((job.dir / "short_v000.mp4").exists, what="the first output", timeout_s=120)
    first_run = handle.result_run_id or ""
    reset_run = await reset_to_first_task(job.client, job.id, first_run)
    again: JobResult = await job.client.get_workflow_handle(
        job.id, run_id=reset_run, result_type=JobResult
    ).result()
    assert again.state == "completed"
    first = await job.client.get_workflow_handle(job.id, run_id=first_run).describe()
    assert first.status == WorkflowExecutionStatus.TERMINATED  # by the reset
    before = _snapshot(job.dir)

    report = await run_janitor_once(job.client, job.task_queue, JanitorRequest(grace_s=0))

    assert job.id not in {e.job_id for e in [*report.swept, *report.skipped]}
    assert report.already_clean >= 1
    assert _snapshot(job.dir) == before
    manifest = assert_manifest_matches_disk(job.dir)
    assert (manifest["state"], manifest["run_id"]) == ("completed", reset_run)


async def _sweep_when_idle(job: Job) -> JanitorReport | None:
    """A janitor sweep with no grace, once no render of the job holds its slot (None before)."""
    report = await run_janitor_once(job.client, job.task_queue, JanitorRequest(grace_s=0))
    busy = [e for e in report.skipped if e.job_id == job.id and "still runs" in e.reason]
    return None if busy else report


def _snapshot(job_dir: Path) -> dict[str, tuple[int, int]]:
    """{name: (size, modification time)} of every entry in the job directory."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in job_dir.iterdir()}


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


async def test_the_janitor_replaces_an_earlier_runs_manifest_and_keeps_what_it_lists(
    source: MediaInfo, tmp_path: Path
) -> None:
    """A job cancelled, reset, then terminated: the earlier run's manifest (`cancelled`) is
    replaced by the terminated run's own, which lists what that manifest listed (its record
    too) and what the terminated run finished; a second sweep changes nothing."""
    job_dir = open_job_dir(tmp_path, JOB)
    render = JobActivities(Settings()).render
    first = await ActivityEnvironment().run(render, render_task(source, job_dir, variation=0))
    clean_up_job(
        CleanupRequest(
            job_id=JOB, job_dir=str(job_dir), state="cancelled", inputs=[source.path],
            stems=["src"], variations=3, seed=0, results=[first], failed=0, run_id="run-1",
        )
    )  # fmt: skip
    listed = read_manifest(job_dir)["outputs"][0]
    stale = manifest_origin(job_dir)
    assert stale is not None and stale.run_id == "run-1"
    # the reset run's render, committed just before the terminate
    second = await ActivityEnvironment().run(render, render_task(source, job_dir, variation=1))
    request = JobRequest(inputs=[source.path], variations=3, output_dir=str(tmp_path), seed=0)
    run = ClosedRun(request=request, media=[source], results=[second])

    swept = sweep_run(JOB, "run-2", run, "terminated", Settings(), stale)

    assert (swept.action, swept.kept) == ("swept", 2)
    manifest = assert_manifest_matches_disk(job_dir)
    assert (manifest["state"], manifest["run_id"]) == ("terminated", "run-2")
    assert [entry["path"] for entry in manifest["outputs"]] == [first.path, second.path]
    kept = manifest["outputs"][0]
    assert (kept["sha256"], kept["argv"]) == (listed["sha256"], listed["argv"])  # its record
    assert verify_job_dir(job_dir).problems == []
    before = outputs_on_disk(job_dir), read_manifest(job_dir)
    again = sweep_run(JOB, "run-2", run, "terminated", Settings(), stale)  # as judged before
    assert (again.action, again.reason) == ("skipped", HAS_MANIFEST)
    assert (outputs_on_disk(job_dir), read_manifest(job_dir)) == before
