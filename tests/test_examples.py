"""examples/: the starter script and the parent workflow that runs `VariationJob` as a child."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import CancelledError
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import (
    assert_manifest_matches_disk,
    communicate,
    processes_mentioning,
    render_heartbeats,
    wait_for,
)
from varia import errors, names
from varia.config import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def parent_module() -> Iterator[ModuleType]:
    """examples/parent_workflow.py imported by name (the workflow sandbox re-imports it)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import parent_workflow

        yield parent_workflow
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest_asyncio.fixture
async def plain_client(settings: Settings) -> Client:
    """A client with Temporal's default converter: the parent's side knows nothing of varia."""
    return await Client.connect(settings.temporal_address)


@pytest_asyncio.fixture
async def parent_worker(
    plain_client: Client, parent_module: ModuleType
) -> AsyncIterator[tuple[Worker, str]]:
    task_queue = f"parent-{uuid.uuid4().hex[:8]}"
    async with parent_module.parent_worker(plain_client, task_queue) as running:
        yield running, task_queue


async def start_parent(
    client: Client, parent_queue: str, settings: Settings, job: dict[str, Any], parent_id: str
) -> WorkflowHandle[Any, dict[str, Any]]:
    """Start the example parent with `job` as its child's request."""
    return await client.start_workflow(
        "PublishVariations",
        {"job": job, "varia_task_queue": settings.task_queue},
        id=parent_id,
        task_queue=parent_queue,
        result_type=dict,
    )


async def run_script(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VARIA_", "TEMPORAL_"))}
    env |= {"TEMPORAL_ADDRESS": settings.temporal_address, "VARIA_TASK_QUEUE": settings.task_queue}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    return await communicate(proc)


async def test_start_job_script(
    settings: Settings, worker: Worker, clips: Clips, out_dir: Path
) -> None:
    code, out, err = await run_script(
        settings, str(EXAMPLES / "start_job.py"), str(clips.short), "-n", "2", "-o", str(out_dir)
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["state"], result["completed"], result["total"]) == ("completed", 2, 2)
    assert_manifest_matches_disk(Path(result["job_dir"]))


async def test_parent_script_completes_with_the_childs_result(
    settings: Settings, worker: Worker, clips: Clips, out_dir: Path
) -> None:
    code, out, err = await run_script(
        settings,
        str(EXAMPLES / "parent_workflow.py"),
        *(str(clips.short), "-n", "2", "-o", str(out_dir)),
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] is True
    job = result["job"]
    assert (job["state"], job["completed"], job["failed"]) == ("completed", 2, 0)
    assert job["job_id"].endswith("-variations")
    assert sorted(Path(p).name for p in result["outputs"]) == ["short_v000.mp4", "short_v001.mp4"]
    assert all(Path(p).is_file() for p in result["outputs"])


async def test_parent_reads_the_childs_failure_as_json(
    plain_client: Client,
    parent_worker: tuple[Worker, str],
    settings: Settings,
    worker: Worker,
    out_dir: Path,
) -> None:
    _, parent_queue = parent_worker
    missing = str(out_dir / "no-such-clip.mp4")
    job = {"inputs": [missing], "variations": 2, "output_dir": str(out_dir)}
    parent_id = f"parent-{uuid.uuid4().hex[:8]}"
    parent = await start_parent(plain_client, parent_queue, settings, job, parent_id)
    result = await parent.result()
    assert result["ok"] is False
    assert result["type"] == errors.BAD_INPUT  # an input refused, not renders failed
    assert missing in result["error"]
    [details] = result["details"]
    assert details["state"] == "failed" and details["total"] == 2
    assert json.loads(json.dumps(result)) == result


async def test_parent_reads_a_refused_request_as_json_with_its_one_detail(
    plain_client: Client,
    parent_worker: tuple[Worker, str],
    settings: Settings,
    worker: Worker,
    out_dir: Path,
) -> None:
    """A request the workflow refuses has `details == [None]`, like every failure without a
    result: the README's `err.cause.details[0]` reads it (it raised IndexError before)."""
    _, parent_queue = parent_worker
    job = {"inputs": ["/abs/clip.mp4"], "variations": 0, "output_dir": str(out_dir)}
    parent_id = f"parent-{uuid.uuid4().hex[:8]}"
    parent = await start_parent(plain_client, parent_queue, settings, job, parent_id)
    result = await parent.result()
    assert (result["ok"], result["type"]) == (False, errors.BAD_REQUEST)
    assert "variations" in result["error"] and result["details"] == [None]


async def test_cancelling_the_parent_reaches_a_child_that_continued_as_new(
    plain_client: Client,
    parent_worker: tuple[Worker, str],
    client: Client,
    settings: Settings,
    worker: Worker,
    clips: Clips,
    out_dir: Path,
) -> None:
    """The SDK's own child cancel names the child's first run; after a continue-as-new that
    run is closed and the cancel was lost (the job rendered to its end, the parent completed).
    The example cancels by workflow id: the run that is current gets it."""
    _, parent_queue = parent_worker
    parent_id = f"parent-{uuid.uuid4().hex[:8]}"
    child_id = f"{parent_id}-variations"
    job = {
        "inputs": [str(clips.short)], "variations": 12, "output_dir": str(out_dir),
        "concurrency": 1, "chunk_size": 1,
    }  # fmt: skip
    parent = await start_parent(plain_client, parent_queue, settings, job, parent_id)

    async def continued() -> bool:
        try:
            description = await client.get_workflow_handle(child_id).describe()
        except Exception:
            return False  # the child has not started yet
        info = description.raw_description.workflow_execution_info
        return description.run_id != info.first_run_id

    await wait_for(continued, timeout_s=60, what="the child's first continue-as-new")
    await parent.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await parent.result()
    assert isinstance(failure.value.cause, CancelledError)

    child = await client.get_workflow_handle(child_id).describe()
    assert child.status == WorkflowExecutionStatus.CANCELED
    job_dir = out_dir / child_id
    assert processes_mentioning(str(job_dir)) == []
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "cancelled" and manifest["completed"] < 12


async def test_cancelling_the_parent_cancels_the_child(
    plain_client: Client,
    parent_worker: tuple[Worker, str],
    client: Client,
    settings: Settings,
    paced_worker: Worker,  # the child's renders last their 20 s: the cancel lands mid-render
    clips: Clips,
    out_dir: Path,
) -> None:
    _, parent_queue = parent_worker
    parent_id = f"parent-{uuid.uuid4().hex[:8]}"
    child_id = f"{parent_id}-variations"
    job = {"inputs": [str(clips.long)], "variations": 2, "output_dir": str(out_dir), "threads": 1}
    parent = await start_parent(plain_client, parent_queue, settings, job, parent_id)

    async def rendering() -> bool:
        try:
            beats = await render_heartbeats(client, child_id)
        except Exception:
            return False  # the child has not started yet
        return any(beat.pid and beat.percent > 0 for beat in beats.values())

    await wait_for(rendering, timeout_s=60, what="the child's FFmpeg to report progress")
    job_dir = out_dir / child_id
    assert processes_mentioning(str(job_dir))

    await parent.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await parent.result()
    assert isinstance(failure.value.cause, CancelledError)

    child = client.get_workflow_handle(child_id)
    assert (await child.describe()).status == WorkflowExecutionStatus.CANCELED
    assert (await parent.describe()).status == WorkflowExecutionStatus.CANCELED
    assert processes_mentioning(str(job_dir)) == []
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "cancelled"
    assert not [p for p in job_dir.iterdir() if names.parse_temp_name(p.name)]
