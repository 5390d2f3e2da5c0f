"""Defect 2 of issue 9: a job directory belongs to one execution chain, not to a workflow id.

A later execution under a reused workflow id (Temporal allows one after the first closed) must
never adopt, change or delete what the earlier one made: it fails at once with a non-retryable
`BadRequest` naming the conflict, and writes nothing into the directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.conftest import Clips
from tests.helpers import Job, assert_manifest_matches_disk
from varia import names
from varia.errors import BAD_REQUEST


def snapshot(job_dir: Path) -> dict[str, tuple[str, int]]:
    """Every file of the job dir: (sha256, mtime in ns) by name."""
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(job_dir.iterdir())
    }


async def refused(job: Job, inputs: list[Path], variations: int, **fields: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failure:
        await job.run(inputs, variations, **fields)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def first_run(job: Job, clips: Clips) -> dict[str, tuple[str, int]]:
    result = await job.run([clips.short], 2, seed=1)
    assert (result.state, result.completed) == ("completed", 2)
    return snapshot(job.dir)


async def test_defect2_reused_id_with_another_seed_does_not_relabel_the_first_runs_outputs(
    job: Job, clips: Clips
) -> None:
    before = await first_run(job, clips)
    cause = await refused(job, [clips.short], 2, seed=2)

    assert cause.type == BAD_REQUEST and cause.non_retryable
    job_dir = job.dir
    assert str(job_dir) in cause.message and "earlier execution" in cause.message
    assert not cause.message.startswith(BAD_REQUEST)  # said once, by the type: not twice
    assert "new workflow id" in cause.message and "REJECT_DUPLICATE" in cause.message
    assert snapshot(job_dir) == before  # no byte, no manifest, no marker changed
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["seed"] == 1 and manifest["state"] == "completed"


async def test_defect2_reused_id_with_a_bad_extra_input_deletes_nothing(
    job: Job, clips: Clips, tmp_path: Path
) -> None:
    before = await first_run(job, clips)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n")
    cause = await refused(job, [clips.short, bad], 2, seed=1)

    assert cause.type == BAD_REQUEST
    assert snapshot(job.dir) == before  # every output of the first run is still there
    assert_manifest_matches_disk(job.dir)


async def test_reused_id_with_another_output_dir_runs(
    job: Job, clips: Clips, tmp_path: Path
) -> None:
    """What the refusal tells a caller to do works: the same id with another output_dir."""
    before = await first_run(job, clips)
    other = tmp_path / "other"
    result = await replace(job, out_dir=other).run([clips.short], 1, seed=2)
    assert result.state == "completed" and result.job_dir == str(other / job.id)
    assert snapshot(job.dir) == before
    marker = json.loads((other / job.id / names.MARKER_NAME).read_text())
    description = await job.client.get_workflow_handle(job.id).describe()
    assert marker == {"job_id": job.id, "first_execution_run_id": description.run_id}
