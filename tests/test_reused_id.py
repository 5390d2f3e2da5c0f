"""Defect 2 of issue 9: a job directory belongs to one execution chain, not to a workflow id.

A later execution under a reused workflow id (Temporal allows one after the first closed) must
never adopt, change or delete what the earlier one made: it fails at once with a non-retryable
`BadRequest` naming the conflict, and writes nothing into the directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.conftest import Clips
from tests.helpers import assert_manifest_matches_disk, run_job
from varia.worker import VariaWorker


def snapshot(job_dir: Path) -> dict[str, tuple[str, int]]:
    """Every file of the job dir: (sha256, mtime in ns) by name."""
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(job_dir.iterdir())
    }


async def refused(
    client: Client, task_queue: str, job_id: str, request: dict[str, object]
) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(client, task_queue, job_id, request)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def first_run(
    client: Client, task_queue: str, job_id: str, clips: Clips, out_dir: Path
) -> dict[str, tuple[str, int]]:
    request = {"inputs": [str(clips.short)], "variations": 2, "output_dir": str(out_dir), "seed": 1}
    result = await run_job(client, task_queue, job_id, request)
    assert (result.state, result.completed) == ("completed", 2)
    return snapshot(out_dir / job_id)


async def test_defect2_reused_id_with_another_seed_does_not_relabel_the_first_runs_outputs(
    client: Client,
    worker: VariaWorker,
    task_queue: str,
    job_id: str,
    clips: Clips,
    out_dir: Path,
) -> None:
    before = await first_run(client, task_queue, job_id, clips, out_dir)
    again = {"inputs": [str(clips.short)], "variations": 2, "output_dir": str(out_dir), "seed": 2}

    cause = await refused(client, task_queue, job_id, again)

    assert cause.type == "BadRequest" and cause.non_retryable
    job_dir = out_dir / job_id
    assert str(job_dir) in cause.message and "earlier execution" in cause.message
    assert "new workflow id" in cause.message and "REJECT_DUPLICATE" in cause.message
    assert snapshot(job_dir) == before  # no byte, no manifest, no marker changed
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["seed"] == 1 and manifest["state"] == "completed"


async def test_defect2_reused_id_with_a_bad_extra_input_deletes_nothing(
    client: Client,
    worker: VariaWorker,
    task_queue: str,
    job_id: str,
    clips: Clips,
    out_dir: Path,
    tmp_path: Path,
) -> None:
    before = await first_run(client, task_queue, job_id, clips, out_dir)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n")
    again = {
        "inputs": [str(clips.short), str(bad)],
        "variations": 2,
        "output_dir": str(out_dir),
        "seed": 1,
    }

    cause = await refused(client, task_queue, job_id, again)

    assert cause.type == "BadRequest"
    assert snapshot(out_dir / job_id) == before  # every output of the first run is still there
    assert_manifest_matches_disk(out_dir / job_id)


async def test_reused_id_with_another_output_dir_runs(
    client: Client,
    worker: VariaWorker,
    task_queue: str,
    job_id: str,
    clips: Clips,
    out_dir: Path,
    tmp_path: Path,
) -> None:
    """What the refusal tells a caller to do works: the same id with another output_dir."""
    before = await first_run(client, task_queue, job_id, clips, out_dir)
    other = tmp_path / "other"
    request = {"inputs": [str(clips.short)], "variations": 1, "output_dir": str(other), "seed": 2}
    result = await run_job(client, task_queue, job_id, request)
    assert result.state == "completed" and result.job_dir == str(other / job_id)
    assert snapshot(out_dir / job_id) == before
    marker = json.loads((other / job_id / ".varia-job").read_text())
    description = await client.get_workflow_handle(job_id).describe()
    assert marker == {"job_id": job_id, "first_execution_run_id": description.run_id}
