"""Handler state and the `progress` query (issue 9, defects 3 and 7), on the real server.

- A drain accepted in the first workflow task of a continued run (update handlers run before
  `run()`) is kept: the run's carry does not overwrite it.
- `cancel_requested` changes in the same workflow task as the state: the query never shows
  `cancelling` with `cancel_requested: false`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import CancelledError

from tests.conftest import Clips
from tests.helpers import (
    assert_manifest_matches_disk,
    processes_mentioning,
    query_progress,
    start_job,
    wait_for,
)
from varia import media, names
from varia.config import Settings
from varia.models import JobCarry, JobRequest, JobResult, Progress
from varia.names import MARKER_NAME
from varia.worker import VariaWorker, build_worker


async def test_defect3_drain_in_the_first_task_of_a_continued_run_is_kept(
    client: Client,
    worker: VariaWorker,
    task_queue: str,
    job_id: str,
    clips: Clips,
    out_dir: Path,
) -> None:
    """Start a run *with a carry* (as continue-as-new does) and deliver `drain` in its very
    first workflow task (update-with-start): the job must end drained, rendering nothing."""
    job_dir = out_dir / job_id
    job_dir.mkdir()
    # A chain started before chains were recorded: its marker names only the job id.
    (job_dir / MARKER_NAME).write_text(json.dumps({"job_id": job_id}))
    request = JobRequest(inputs=[str(clips.short)], variations=2, output_dir=str(out_dir))
    carry = JobCarry(
        job_dir=str(job_dir),
        media=[media.probe(str(clips.short))],
        next_index=0,
        completed=0,
        failed=0,
        runs=2,
    )
    start = WithStartWorkflowOperation(
        names.WORKFLOW_TYPE,
        args=[request, carry],
        id=job_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        result_type=JobResult,
    )
    answer = await client.execute_update_with_start_workflow(
        "drain", start_workflow_operation=start, result_type=Progress
    )
    assert answer.draining

    handle = await start.workflow_handle()
    result = await handle.result()

    assert (result.state, result.completed) == ("drained", 0)
    assert (await query_progress(handle)).draining
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert names.RENDER not in scheduled
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "drained" and manifest["outputs"] == []


def stubborn_ffmpeg(directory: Path) -> Path:
    """An FFmpeg stand-in that reports progress forever and ignores `q` and SIGTERM: only
    the last stop stage (SIGKILL) ends it, so the job stays `cancelling` for two stages."""
    script = directory / "ffmpeg-stubborn"
    script.write_text(
        "#!/bin/bash\n"
        "trap '' TERM INT\n"
        "frame=0\n"
        "while true; do\n"
        "  frame=$((frame + 1))\n"
        '  printf "frame=%d\\nout_time_us=%d\\nprogress=continue\\n" $frame $((frame * 40000))\n'
        "  sleep 0.05\n"
        "done\n"
    )
    script.chmod(0o755)
    return script


async def test_defect7_cancelling_is_never_shown_without_cancel_requested(
    client: Client, task_queue: str, job_id: str, clips: Clips, out_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(
        TEMPORAL_ADDRESS=client.service_client.config.target_host,
        VARIA_TASK_QUEUE=task_queue,
        VARIA_FFMPEG=str(stubborn_ffmpeg(tmp_path)),
        VARIA_STOP_STAGE_TIMEOUT=1.0,
    )
    job_dir = out_dir / job_id
    async with build_worker(client, settings):
        request = JobRequest(inputs=[str(clips.long)], variations=1, output_dir=str(out_dir))
        handle = await start_job(client, task_queue, job_id, request)
        await wait_for(lambda: processes_mentioning(str(job_dir)), what="the render to run")
        await handle.cancel()
        seen: list[tuple[str, bool]] = []

        async def cancelling_seen() -> bool:
            progress = await query_progress(handle)
            seen.append((progress.state, progress.cancel_requested))
            assert not (progress.state == "cancelling" and not progress.cancel_requested), seen
            return progress.state == "cancelling"

        await wait_for(cancelling_seen, what="the job to show cancelling")
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        final = await query_progress(handle)
    assert isinstance(failure.value.cause, CancelledError)
    assert (final.state, final.cancel_requested) == ("cancelled", True)
    assert processes_mentioning(str(job_dir)) == []
    assert assert_manifest_matches_disk(job_dir)["state"] == "cancelled"
