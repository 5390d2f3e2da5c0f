"""What comes out, through the real server: result, status, `varia sheet`, `varia verify`
(passes on a fresh job, names each altered, removed or added file), and bounds that fail."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import assert_manifest_matches_disk
from varia import errors, names
from varia.client.jobs import Jobs
from varia.config import Settings
from varia.models import JobResult


async def run_varia(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    """`python -m varia ARGS --json` as a user runs it: exit code and its one JSON object."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VARIA_", "TEMPORAL_"))}
    env |= {"TEMPORAL_ADDRESS": settings.temporal_address, "VARIA_TASK_QUEUE": settings.task_queue}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "varia",
        *args,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, json.loads(out)


async def test_outcome_sheet_status_and_verify(
    client: Client,
    worker: Worker,
    settings: Settings,
    task_queue: str,
    job_id: str,
    clips: Clips,
    out_dir: Path,
) -> None:
    request = {"inputs": [str(clips.silent)], "variations": 3, "output_dir": str(out_dir),
               "seed": 2, "concurrency": 2}  # fmt: skip
    handle = await client.start_workflow(
        names.WORKFLOW_TYPE, request, id=job_id, task_queue=task_queue, result_type=JobResult
    )
    result = await handle.result()
    job_dir = out_dir / job_id

    manifest = assert_manifest_matches_disk(job_dir)
    assert result.sheet == str(job_dir / "contact-sheet.png")
    assert result.quality is not None and result.quality.measured == 3
    assert result.quality.model_dump() == manifest["quality"]
    for output in manifest["outputs"]:
        assert len(output["sha256"]) == 64 and output["argv"][-1].endswith(".part")
        assert output["ffmpeg"]["version"] and output["varia_version"]
        assert 0 < output["quality"]["ssim"] < 1

    status = await Jobs(client, settings).status(job_id)
    assert (status.sheet, status.quality) == (result.sheet, manifest["quality"])
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert f"contact sheet: `{result.sheet}`" in metadata.current_details
    assert "quality min / median: SSIM" in metadata.current_details

    code, shown = await run_varia(settings, "sheet", job_id)
    assert (code, shown["sheet"]) == (0, result.sheet)
    code, report = await run_varia(settings, "verify", str(job_dir))
    assert (code, report["ok"], report["verified"], report["problems"]) == (0, True, 4, [])

    outputs = [job_dir / o["path"] for o in manifest["outputs"]]
    data = bytearray(outputs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    outputs[0].write_bytes(bytes(data))
    outputs[1].unlink()
    (job_dir / "extra.mp4").write_bytes(b"not ours")
    code, report = await run_varia(settings, "verify", str(job_dir))
    assert code == 1 and not report["ok"]
    problems = report["problems"]
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{outputs[0].name}: SHA-256 ")
    assert problems[1] == f"{outputs[1].name}: missing"
    assert problems[2] == "extra.mp4: not listed in the manifest"


async def test_bounds_no_recipe_fits_fails_the_job_naming_them(
    client: Client, worker: Worker, task_queue: str, job_id: str, clips: Clips, out_dir: Path
) -> None:
    request = {"inputs": [str(clips.silent)], "variations": 1, "output_dir": str(out_dir),
               "min_ssim": 0.999, "max_attempts": 2}  # fmt: skip
    handle = await client.start_workflow(
        names.WORKFLOW_TYPE, request, id=job_id, task_queue=task_queue, result_type=JobResult
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == errors.JOB_FAILED
    assert "1 of 1 variations failed" in cause.message
    assert "variation 0: no recipe within SSIM from 0.999 to 1 after 2 attempt(s)" in cause.message
    assert cause.message.count(f"{clips.silent} variation 0") == 1  # named once, not twice
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert (manifest["outputs"], manifest["sheets"], manifest["failed"]) == ([], [], 1)
