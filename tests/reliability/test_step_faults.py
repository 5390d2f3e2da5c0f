"""A worker SIGKILLed while prepare, record or cleanup runs: a new worker carries the job on.

Record heartbeats in the background (LIGHT_HEARTBEAT_TIMEOUT), so the server retries a dead
worker's attempt within seconds. Prepare and cleanup run as local activities (patch
"local-edges"), inside a workflow task: the dead worker's task times out and the new worker
runs the step again. The 60 s deadline for the job to finish after the kill is the contract
under test, not a speed figure: before the heartbeats, the retry waited for the step's
start-to-close timeout (prepare's 2 min heartbeat timeout, record's 2 min, cleanup's 10 min),
and every case failed it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from tests.conftest import Clips
from tests.helpers import Job, assert_manifest_matches_disk, read_manifest, wait_for
from tests.reliability.support import Stopwatch, WorkerProcesses, leftovers
from varia import names, sheet
from varia.worker import EXIT_STUCK, build_worker

RECOVERY_DEADLINE_S = 60  # a retry at start-to-close (>= 2 min) misses it; a heartbeat one not

STEPS = {"prepare": names.PREPARE, "record": names.RECORD, "cleanup": names.FINISH}


async def _attempts(
    client: Client, handle: WorkflowHandle[Any, Any], activity_type: str
) -> list[str]:
    """The last failure of each retried attempt of `activity_type`, over the chain's runs."""
    failures = []
    scheduled: dict[int, str] = {}
    run: WorkflowHandle[Any, Any] | None = client.get_workflow_handle(
        handle.id, run_id=handle.first_execution_run_id or handle.result_run_id
    )
    while run is not None:
        next_run = None
        async for event in run.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attrs.activity_type.name
            elif event.HasField("activity_task_started_event_attributes"):
                started = event.activity_task_started_event_attributes
                retried = started.attempt > 1
                if retried and scheduled.get(started.scheduled_event_id) == activity_type:
                    failures.append(started.last_failure.message)
            elif event.HasField("workflow_execution_continued_as_new_event_attributes"):
                continued = event.workflow_execution_continued_as_new_event_attributes
                next_run = client.get_workflow_handle(
                    handle.id, run_id=continued.new_execution_run_id
                )
        run = next_run
    return failures


async def _timed_out_tasks(handle: WorkflowHandle[Any, Any]) -> int:
    """Workflow tasks of the job's first run that timed out (a dead worker held them)."""
    kinds = [event.event_type async for event in handle.fetch_history_events()]
    return kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT)


@pytest.mark.parametrize("step", list(STEPS))
async def test_worker_killed_mid_step_job_carries_on(
    step: str, bare_job: Job, worker_processes: WorkerProcesses, clips: Clips, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    doomed = worker_processes.start(
        bare_job.task_queue,
        command=[sys.executable, "-m", "tests.reliability.gated_worker", step, str(gate)],
    )
    inputs = [clips.short, clips.silent] if step == "prepare" else [clips.short]
    chunking = {"chunk_size": 1} if step == "record" else {}
    handle = await bare_job.start(inputs, 2, **chunking)
    await wait_for(gate.exists, timeout_s=90, what=f"the worker to be held mid-{step}")
    if step == "cleanup":  # the sweep ran: the outputs it kept are there, no manifest yet
        kept = sorted(p.name for p in bare_job.dir.iterdir() if p.suffix == ".mp4")
        assert len(kept) == 2 and not (bare_job.dir / names.MANIFEST_NAME).exists()
    clock = Stopwatch()
    doomed.signal(signal.SIGKILL)
    await asyncio.to_thread(doomed.process.wait, 30)
    async with build_worker(bare_job.client, bare_job.settings):
        result = await asyncio.wait_for(handle.result(), RECOVERY_DEADLINE_S)
        recovered = clock()
    print(f"\nRECOVERY {step}: killed worker -> job completed in {recovered}s")
    total = len(inputs) * 2
    assert result.state == "completed" and result.completed == total and result.failed == 0
    assert_manifest_matches_disk(bare_job.dir)
    assert leftovers(bare_job.dir) == []
    manifest = read_manifest(bare_job.dir)
    assert len(manifest["outputs"]) == total
    if step == "cleanup":  # the retry swept again and kept the same outputs
        assert sorted(entry["path"] for entry in manifest["outputs"]) == kept
    if step == "record":
        [failure] = await _attempts(bare_job.client, handle, STEPS[step])
        assert "heartbeat" in failure.lower(), failure
    else:  # a local activity: no attempt of its own in the history, a task that timed out
        assert await _attempts(bare_job.client, handle, STEPS[step]) == []
        assert await _timed_out_tasks(handle) == 1


@pytest.mark.parametrize("step", ["prepare", "cleanup"])
async def test_a_worker_stopped_mid_local_step_exits_and_a_new_worker_carries_on(
    step: str, bare_job: Job, worker_processes: WorkerProcesses, clips: Clips, tmp_path: Path
) -> None:
    """SIGTERM while prepare or cleanup hangs: the SDK waits for a local activity however long
    it runs (measured: a worker alive 40 s after SIGTERM), so `varia worker` gives up waiting
    `SHUTDOWN_MARGIN_S` after its graceful timeout, says why and exits; the step runs again on
    the next worker."""
    gate = tmp_path / "gate"
    doomed = worker_processes.start(
        bare_job.task_queue,
        command=[sys.executable, "-m", "tests.reliability.gated_worker", step, str(gate)],
        VARIA_GRACEFUL_SHUTDOWN="1",
    )
    inputs = [clips.short, clips.silent] if step == "prepare" else [clips.short]  # held: 2nd probe
    handle = await bare_job.start(inputs, 2)
    await wait_for(gate.exists, timeout_s=90, what=f"the worker to be held mid-{step}")
    doomed.signal(signal.SIGTERM)
    returncode = await asyncio.to_thread(doomed.process.wait, 60)
    assert returncode == EXIT_STUCK
    assert "shutdown did not finish within 6 s" in doomed.log(), doomed.log()
    async with build_worker(bare_job.client, bare_job.settings):
        result = await asyncio.wait_for(handle.result(), RECOVERY_DEADLINE_S)
    assert result.state == "completed" and result.completed == 2 * len(inputs)
    assert_manifest_matches_disk(bare_job.dir)
    assert leftovers(bare_job.dir) == []


async def test_a_cancel_during_the_local_cleanup_runs_it_again_to_the_same_manifest(
    bare_job: Job, clips: Clips, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task that runs cleanup also completes the job; a cancel that reaches the server
    meanwhile makes it refuse that completion (the workflow has not seen the request), so the
    task fails and its local activity's marker with it: the next task runs cleanup again (as a
    retry: idempotent) and the job still ends as its first cleanup said."""
    held, release, calls = threading.Event(), threading.Event(), list[Path]()
    write_sheets = sheet.write_sheets

    def first_held(job_dir: Path, *args: Any, **kwargs: Any) -> Any:
        calls.append(job_dir)
        if len(calls) == 1:
            held.set()
            release.wait(60)
        return write_sheets(job_dir, *args, **kwargs)

    monkeypatch.setattr(sheet, "write_sheets", first_held)
    try:
        async with build_worker(bare_job.client, bare_job.settings):
            handle = await bare_job.start([clips.short], 2)
            await wait_for(held.is_set, timeout_s=90, what="cleanup to draw its sheet")
            await handle.cancel()  # returns once the server holds the request
            release.set()
            result = await asyncio.wait_for(handle.result(), RECOVERY_DEADLINE_S)
    finally:
        release.set()
    assert result.state == "completed" and result.completed == 2  # completion wins
    kinds = [event.event_type async for event in handle.fetch_history_events()]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in kinds and len(calls) == 2
    manifest = assert_manifest_matches_disk(bare_job.dir)
    assert manifest["state"] == "completed" and len(manifest["outputs"]) == 2
    assert leftovers(bare_job.dir) == []
