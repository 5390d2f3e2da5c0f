"""The process commands: a worker, the embedded dev server, the one-command demo, and one
janitor sweep.

Worker-side modules (workflows, activities, PyAV) are imported inside these commands only.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from varia.cli.app import JsonFlag, command
from varia.cli.exits import Exit, console, emit, err_console, fail, run, say, settings_or_exit
from varia.settings_doc import settings_help


@command(epilog=settings_help())
def worker(as_json: JsonFlag = False) -> None:
    """Run a worker (SIGTERM/SIGINT stop it gracefully; renders in flight retry elsewhere)."""
    from varia.client.connection import open_client
    from varia.logs import configure_logging
    from varia.worker import run_worker

    settings = settings_or_exit(as_json)
    configure_logging(settings)

    async def work() -> None:
        await open_client(settings)  # unreachable server: one line, exit 4
        await run_worker(settings, exit_if_stuck=True)

    run(as_json, work)
    if as_json:
        emit({"stopped": True, "task_queue": settings.task_queue})


@command()
def server(
    port: Annotated[
        int | None,
        typer.Option(metavar="PORT", help="gRPC port (default: TEMPORAL_ADDRESS's, 7233)."),
    ] = None,
    ui_port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Web UI port (default: port + 1000).")
    ] = None,
    ip: Annotated[str, typer.Option(metavar="IP", help="Address to bind.")] = "127.0.0.1",
    db: Annotated[
        Path | None, typer.Option(metavar="FILE", help="SQLite file (default: user data dir).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the embedded Temporal dev server: varia's search attributes and janitor schedule."""
    from varia.server import DevServer, ServerError, default_db_path
    from varia.signals import stop_on_signals

    settings = settings_or_exit(as_json)
    port = port or urlsplit(f"//{settings.temporal_address}").port or 7233
    ui_port = ui_port or port + 1000  # where the CLI's links point by default

    async def serve() -> None:
        with stop_on_signals() as stop:  # before anything starts: a SIGTERM is never fatal
            dev = DevServer(
                host=ip,
                port=port,
                ui_port=ui_port,
                db_path=db or default_db_path(),
                janitor_task_queue=settings.task_queue,
                janitor_interval_s=settings.janitor_interval_s,
            )
            async with dev:
                assert dev.process is not None
                if as_json:
                    emit({"address": dev.address, "ui_url": dev.ui_url, "pid": dev.process.pid})
                else:
                    console.print(
                        f"Temporal at {dev.address}, Web UI at {dev.ui_url}; Ctrl-C stops it"
                    )
                await _until_set_or_exit(stop, dev.process)
        say("stopped")

    try:
        asyncio.run(serve())
    except ServerError as err:
        fail(Exit.UNREACHABLE, str(err), as_json)
    except KeyboardInterrupt:
        say("stopped")


async def _until_set_or_exit(stop: asyncio.Event, process: subprocess.Popen[bytes]) -> None:
    """Wait until `stop` is set or `process` exits, whichever comes first."""
    exited = asyncio.ensure_future(asyncio.to_thread(process.wait))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()


@command()
def janitor(
    grace: Annotated[
        float | None,
        typer.Option(
            metavar="S", min=0, help="Only jobs closed this many seconds ago (default: setting)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Clean up terminated and timed-out jobs once (the schedule does it every interval)."""
    from varia.client.connection import check_namespace, open_client
    from varia.janitor import JanitorRequest
    from varia.janitor_workflow import run_janitor_once

    settings = settings_or_exit(as_json)

    async def work() -> Any:
        client = await open_client(settings)
        await check_namespace(client, settings)
        return await run_janitor_once(client, settings.task_queue, JanitorRequest(grace_s=grace))

    report = run(as_json, work)
    if as_json:
        emit(report.model_dump(mode="json"))
        return
    console.print(
        f"examined {report.examined} closed job(s): {len(report.swept)} swept, "
        f"{report.already_clean} already had a manifest, {len(report.skipped)} left alone",
        highlight=False,
    )
    for job in report.swept:
        console.print(
            f"  swept {escape(job.job_id)}: {job.state}, {job.kept} kept, {job.removed} removed"
            f" ({escape(job.job_dir or '-')})",
            highlight=False,
        )
    for job in report.skipped:
        console.print(f"  left {escape(job.job_id)} alone: {escape(job.reason)}", highlight=False)


@command()
def demo(
    variations: Annotated[
        int,
        typer.Option(
            "-n", "--variations", metavar="N", min=1, max=20, help="Variations of the test clip."
        ),
    ] = 3,
    seconds: Annotated[float, typer.Option(metavar="S", help="Length of the test clip.")] = 4.0,
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Where to keep the clip and outputs.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run everything on this machine: server, worker, a test clip and a job."""
    from varia.demo import run_demo

    shown = err_console if as_json else console
    try:
        keep_open = False if as_json else None  # None: wait for Enter if stdin is a terminal
        code = asyncio.run(
            run_demo(
                shown, variations=variations, seconds=seconds, keep_dir=out, keep_open=keep_open
            )
        )
    except KeyboardInterrupt:
        say("interrupted: everything the demo started was stopped")
        code = 130
    if as_json:
        emit({"exit_code": code})
    raise typer.Exit(code)
