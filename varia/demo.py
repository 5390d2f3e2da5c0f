"""`varia demo`: the whole product on one machine in one command.

Starts the embedded Temporal dev server (free ports, SQLite in a temp dir) and a worker in
this process, generates a short test clip, runs a job with a live progress bar, prints every
output and the Web UI link, and stops everything it started (also on Ctrl-C).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from varia.cli.watch import follow
from varia.client.jobs import Jobs
from varia.clips import make_clip
from varia.config import Settings
from varia.models import JobRequest
from varia.server import DevServer
from varia.worker import build_worker


async def run_demo(
    console: Console, *, variations: int = 3, seconds: float = 4.0, keep_dir: Path | None = None
) -> int:
    """Run the demo; returns a process exit code."""
    work = Path(keep_dir or tempfile.mkdtemp(prefix="varia-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="varia-demo-db-") as db_dir:
        console.print("[bold]varia demo[/]: starting the embedded Temporal server…")
        server = DevServer(db_path=Path(db_dir) / "temporal.db")
        async with server:
            console.print(
                f"  Temporal at {server.address}, Web UI at {server.ui_url}", soft_wrap=True
            )
            settings = Settings(TEMPORAL_ADDRESS=server.address, VARIA_TASK_QUEUE="varia-demo")
            jobs = await Jobs.open(settings)
            clip = make_clip(work / "demo-input.mp4", seconds=seconds, size="640x360")
            console.print(f"  test clip: {clip}", soft_wrap=True)
            async with build_worker(jobs.client, settings):
                request = JobRequest(
                    inputs=[str(clip)],
                    variations=variations,
                    output_dir=str(work / "out"),
                    seed=7,
                    concurrency=1,
                )
                job_id = await jobs.start(request)
                link = f"{server.ui_url}/namespaces/default/workflows/{job_id}"
                console.print(f"  job {job_id}: {link}", soft_wrap=True)
                await follow(jobs, job_id, console)
                result = await jobs.result(job_id)
        console.print(f"[green]done[/]: {result.completed}/{result.total} variations")
        manifest = Path(result.manifest)
        for line in sorted(Path(result.job_dir).glob("*.mp4")):
            console.print(f"  {line}", soft_wrap=True)
        console.print(f"  manifest: {manifest}", soft_wrap=True)
        console.print(
            "  (the Web UI link works while a server runs: try `varia server`)", soft_wrap=True
        )
    return 0
