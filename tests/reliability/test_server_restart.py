"""The Temporal dev server (file database) restarted mid-job: the job completes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.conftest import Clips
from tests.helpers import assert_manifest_matches_disk, render_heartbeats, start_job, wait_for
from tests.reliability.support import Stopwatch, job_processes, leftovers
from varia.config import Settings
from varia.server import DevServer, free_port
from varia.worker import build_worker


async def test_job_survives_a_server_restart(
    tmp_path: Path, task_queue: str, job_id: str, clips: Clips, out_dir: Path
) -> None:
    server = DevServer(port=free_port(), db_path=tmp_path / "temporal.db", ui=False)
    await server.start()
    try:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        settings = Settings(TEMPORAL_ADDRESS=server.address, VARIA_TASK_QUEUE=task_queue)
        async with build_worker(client, settings):
            handle = await start_job(
                client,
                task_queue,
                job_id,
                {
                    "inputs": [str(clips.long)],
                    "variations": 2,
                    "output_dir": str(out_dir),
                    "threads": 1,
                },
            )

            async def rendering() -> str | None:
                beats = await render_heartbeats(client, job_id)
                return "rendering" if any(b.percent > 0 for b in beats.values()) else None

            await wait_for(rendering, timeout_s=60, what="a render in progress")
            clock = Stopwatch()
            server.stop()  # SIGTERM by pid; the SQLite file keeps the history
            await server.start()  # same port, same database
            result = await asyncio.wait_for(handle.result(), 120)
            recovered = clock()
    finally:
        server.stop()
    assert result.state == "completed" and result.completed == 2
    job_dir = out_dir / job_id
    assert_manifest_matches_disk(job_dir)
    assert leftovers(job_dir) == [] and job_processes(job_id) == []
    print(f"\nRECOVERY server restart: stop -> job completed in {recovered}s")
