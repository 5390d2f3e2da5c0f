"""Starting a job: eager workflow start when the worker runs in the starter's process."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import Clips
from varia.client.jobs import Jobs, started_eagerly
from varia.config import Settings
from varia.models import JobRequest


def _request(clips: Clips, out_dir: Path) -> JobRequest:
    return JobRequest(inputs=[str(clips.short)], variations=1, output_dir=str(out_dir))


async def test_eager_start_hands_the_first_task_to_the_local_worker(
    client: Client,
    worker: Worker,
    settings: Settings,
    job_id: str,
    clips: Clips,
    out_dir: Path,
) -> None:
    handle = await Jobs(client, settings).start_handle(_request(clips, out_dir), job_id, eager=True)
    result = await handle.result()
    assert started_eagerly(handle)  # the start reply carried the first workflow task
    assert (result.state, result.completed) == ("completed", 1)


async def test_eager_start_without_a_local_worker_is_an_ordinary_start(
    client: Client, settings: Settings, job_id: str, clips: Clips, out_dir: Path
) -> None:
    handle = await Jobs(client, settings).start_handle(_request(clips, out_dir), job_id, eager=True)
    assert not started_eagerly(handle)
    await handle.terminate("test over")
