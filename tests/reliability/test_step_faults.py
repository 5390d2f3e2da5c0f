"""A worker SIGKILLed while prepare, record or cleanup runs: a new worker carries the job on.

As an activity (record, cleanup, and prepare of a job of more than `LOCAL_PREPARE_MAX_INPUTS`
inputs) each step heartbeats in the background (LIGHT_HEARTBEAT_TIMEOUT), so the server retries
a dead worker's attempt within seconds. As a local activity (prepare of a job of fewer inputs)
it runs inside a workflow task, which times out (10 s) and runs again, step and all, on the new
worker. The 60 s deadline for the job to
finish after the kill is the contract under test, not a speed figure: before the heartbeats, the
retry waited for the step's start-to-close timeout (prepare's 2 min heartbeat timeout, record's
2 min, cleanup's 10 min), and every case failed it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from tests.conftest import Clips
from tests.helpers import Job, assert_manifest_matches_disk, read_manifest, wait_for
from tests.reliability.support import Stopwatch, WorkerProcesses, leftovers
from varia import names
from varia.clips import make_clip
from varia.worker import build_worker
from varia.workflow_calls import LOCAL_PREPARE_MAX_INPUTS

RECOVERY_DEADLINE_S = 60  # a retry at start-to-close (>= 2 min) misses it; a heartbeat one not

STEPS = {"prepare": names.PREPARE, "record": names.RECORD, "cleanup": names.FINISH}
CASES = [  # (step, inputs): one more than the cap prepares in an activity
    ("prepare", 2),
    ("prepare", LOCAL_PREPARE_MAX_INPUTS + 1),
    ("record", 1),
    ("cleanup", 1),
]


async def _attempts(
    client: Client, handle: WorkflowHandle[Any, Any], activity_type: str
) -> tuple[list[str], int]:
    """The last failure of each retried attempt of `activity_type`, and how many workflow
    tasks timed out, over the chain's runs."""
    failures = []
    timed_out = 0
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
            elif event.HasField("workflow_task_timed_out_event_attributes"):
                timed_out += 1
            elif event.HasField("workflow_execution_continued_as_new_event_attributes"):
                continued = event.workflow_execution_continued_as_new_event_attributes
                next_run = client.get_workflow_handle(
                    handle.id, run_id=continued.new_execution_run_id
                )
        run = next_run
    return failures, timed_out


def _inputs(clips: Clips, count: int, tmp_path: Path) -> list[Path]:
    """`count` inputs: the short clips, or hard links of a tiny one (a large job's inputs)."""
    if count <= 2:
        return [clips.short, clips.silent][:count]
    tmp_path.mkdir()
    tiny = make_clip(tmp_path / "tiny.mp4", seconds=0.5, size="64x48")
    links = [tmp_path / f"tiny-{i}.mp4" for i in range(count)]
    for link in links:
        link.hardlink_to(tiny)
    return links


@pytest.mark.parametrize(("step", "count"), CASES)
async def test_worker_killed_mid_step_job_carries_on(
    step: str,
    count: int,
    bare_job: Job,
    worker_processes: WorkerProcesses,
    clips: Clips,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    doomed = worker_processes.start(
        bare_job.task_queue,
        command=[sys.executable, "-m", "tests.reliability.gated_worker", step, str(gate)],
    )
    inputs = _inputs(clips, count, tmp_path / "inputs")
    local = step == "prepare" and count <= LOCAL_PREPARE_MAX_INPUTS
    variations = 2 if count <= 2 else 1
    chunking = {"chunk_size": 1} if step == "record" else {}
    handle = await bare_job.start(inputs, variations, **chunking)
    await wait_for(gate.exists, timeout_s=90, what=f"the worker to be held mid-{step}")
    if step == "cleanup":  # the sweep ran: the outputs it kept are there, no manifest yet
        kept = sorted(p.name for p in bare_job.dir.iterdir() if p.suffix == ".mp4")
        assert len(kept) == len(inputs) * variations
        assert not (bare_job.dir / names.MANIFEST_NAME).exists()
    clock = Stopwatch()
    doomed.signal(signal.SIGKILL)
    await asyncio.to_thread(doomed.process.wait, 30)
    async with build_worker(bare_job.client, bare_job.settings):
        result = await asyncio.wait_for(handle.result(), RECOVERY_DEADLINE_S)
        recovered = clock()
    print(f"\nRECOVERY {step}: killed worker -> job completed in {recovered}s")
    total = len(inputs) * variations
    assert result.state == "completed" and result.completed == total and result.failed == 0
    assert_manifest_matches_disk(bare_job.dir)
    assert leftovers(bare_job.dir) == []
    manifest = read_manifest(bare_job.dir)
    assert len(manifest["outputs"]) == total
    if step == "cleanup":  # the retry swept again and kept the same outputs
        assert sorted(entry["path"] for entry in manifest["outputs"]) == kept
    failures, tasks_timed_out = await _attempts(bare_job.client, handle, STEPS[step])
    if local:  # the step ran in the workflow task: that task timed out and ran again
        assert failures == [] and tasks_timed_out >= 1
    else:
        [failure] = failures
        assert "heartbeat" in failure.lower(), failure
