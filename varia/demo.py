"""`varia demo`: the whole product on one machine in one command.

Starts the embedded Temporal dev server (free ports) and a worker in this process, generates a
short test clip, runs a job with a live progress bar, and prints every output. The server keeps
its history in a SQLite file under the user's data dir (`demo.db` beside `varia server`'s own),
so the job stays visible in the Web UI afterwards: from a terminal the demo keeps the server up
until Enter or Ctrl-C; either way it prints the `varia server --db …` command that reopens it.
Everything it started is stopped when it ends (also on Ctrl-C).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from varia.cli.watch import follow
from varia.client.jobs import Jobs, started_eagerly
from varia.clips import make_clip
from varia.config import Settings
from varia.models import JobRequest
from varia.server import DatabaseInUse, DevServer, default_db_path
from varia.verify import verify_job_dir
from varia.worker import build_worker

REOPEN_UI = "http://localhost:8233"
"""The Web UI of `varia server` on its default ports (where the reopen command serves it)."""


def demo_db_path() -> Path:
    """The demo's SQLite file: `demo.db` beside `varia server`'s default database."""
    return default_db_path().with_name("demo.db")


async def start_server(db_path: Path) -> DevServer:
    """The demo's dev server on `db_path`, or on a fresh file beside it if that one is in use."""
    try:
        return await DevServer(db_path=db_path).start()
    except DatabaseInUse:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        return await DevServer(db_path=db_path.with_name(f"demo-{stamp}-{os.getpid()}.db")).start()


async def run_demo(
    console: Console,
    *,
    variations: int = 3,
    seconds: float = 4.0,
    keep_dir: Path | None = None,
    keep_open: bool | None = None,
) -> int:
    """Run the demo; returns a process exit code.

    `keep_open` (default: stdin is a terminal) keeps the server and its Web UI up after the
    job until Enter or Ctrl-C.
    """
    keep_open = sys.stdin.isatty() if keep_open is None else keep_open
    work = Path(keep_dir or tempfile.mkdtemp(prefix="varia-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    console.print("[bold]varia demo[/]: starting the embedded Temporal server…")
    server = await start_server(demo_db_path())
    try:
        assert server.db_path is not None
        console.print(f"  Temporal at {server.address}, Web UI at {server.ui_url}", soft_wrap=True)
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
            # the worker runs in this process: eager start skips a task-queue round trip
            handle = await jobs.start_handle(request, eager=True)
            job_id = handle.id
            path = f"/namespaces/default/workflows/{job_id}"
            console.print(f"  job {job_id}: {server.ui_url}{path}", soft_wrap=True)
            if started_eagerly(handle):
                console.print("  (started eagerly in this process)")
            await _until_polled(jobs, settings.task_queue)
            await follow(jobs, job_id, console)
            result = await jobs.result(job_id)
            console.print(f"[green]done[/]: {result.completed}/{result.total} variations")
            for line in sorted(Path(result.job_dir).glob("*.mp4")):
                console.print(f"  {line}", soft_wrap=True)
            console.print(f"  manifest: {result.manifest}", soft_wrap=True, markup=False)
            for sheet in result.sheets:
                console.print(f"  contact sheet: {sheet}", soft_wrap=True, markup=False)
            if result.quality is not None:
                console.print(f"  quality {result.quality.line()}", soft_wrap=True)
            report = verify_job_dir(Path(result.job_dir))
            for problem in report.problems:
                console.print(
                    f"  [red]problem[/]: {escape(problem)}", soft_wrap=True, highlight=False
                )
            verdict = "[green]verified[/]" if report.ok else "[red]verification failed[/]"
            console.print(
                f"{verdict}: {report.verified} file(s) match the manifest "
                f"(varia verify {escape(result.job_dir)})",
                soft_wrap=True,
            )
            if keep_open:  # the worker stays too: the UI's queries (`progress`) answer
                console.print(
                    f"The Web UI shows the job at {server.ui_url}{path}\n"
                    "Press Enter (or Ctrl-C) to stop the server.",
                    soft_wrap=True,
                )
                await enter_or_ctrl_c()
        reopen = shlex.join(["varia", "server", "--db", str(server.db_path)])
        console.print(
            f"The job's history is kept in {server.db_path}. To see it in the Web UI again, run\n"
            f"  {reopen}\n"
            f"and open {REOPEN_UI}{path}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    finally:
        server.stop()
    return 0 if report.ok else 1


async def enter_or_ctrl_c() -> None:
    """Wait until a line arrives on stdin (or it closes), or SIGINT."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    fd = sys.stdin.fileno()
    loop.add_reader(fd, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    try:
        await done.wait()
    finally:
        loop.remove_reader(fd)
        loop.remove_signal_handler(signal.SIGINT)


async def _until_polled(jobs: Jobs, task_queue: str, deadline_s: float = 10.0) -> None:
    """Wait (bounded) until the server has seen this process's worker poll, so the first
    status line does not say that no worker polls the demo's queue."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    while not await jobs.has_workers(task_queue) and loop.time() < until:
        await asyncio.sleep(0.05)
