"""The `varia` commands: typer wiring only, one small function per command.

Each command reads its settings, asks `varia.client.jobs.Jobs`, and hands the answer to
`varia.cli.render` (or prints it as one JSON object with `--json`). Exit codes and the error
mapping live in `varia.cli.exits`. Worker-side modules (workflows, activities, PyAV) are
imported only by `worker` and `demo`, inside those commands.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer import _click as click  # typer 0.29 vendors click

from varia.cli import render
from varia.cli.exits import (
    Exit,
    console,
    emit,
    err_console,
    fail,
    run,
    say,
    settings_or_exit,
    wants_json,
)
from varia.cli.help import NamedCommand, NamedGroup
from varia.client.records import UNSUCCESSFUL_STATES, JobStatus, StopOutcome
from varia.config import Settings, settings_help
from varia.models import JobRequest, JobState

if TYPE_CHECKING:
    from varia.client.jobs import Jobs

app = typer.Typer(
    name="varia",
    cls=NamedGroup,
    help="Durable video-variation renderer on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
command = partial(app.command, cls=NamedCommand)

LIST_STATES = sorted([*JobState.__args__, "terminated", "timed_out"])  # type: ignore[attr-defined]
NEEDS = (
    "Needs a Temporal server (`varia server`, or TEMPORAL_ADDRESS / a TEMPORAL_PROFILE) and a "
    "worker polling the task queue (`varia worker`)."
)

JsonFlag = Annotated[
    bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout (for scripts).")
]
JobId = Annotated[
    str, typer.Argument(metavar="ID", help="The job (workflow) id.", show_default=False)
]
NoWait = Annotated[
    bool,
    typer.Option("--no-wait", metavar="", help="Only request it; do not wait until it closed."),
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"varia {version('varia')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", metavar="", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Durable video-variation renderer on Temporal."""


async def _open(settings: Settings) -> Jobs:
    """The client layer, connected (imported here: `--help` never loads the Temporal SDK)."""
    from varia.client.jobs import Jobs

    return await Jobs.open(settings)


def _exit_for(status: JobStatus) -> int:
    return int(Exit.JOB_UNSUCCESSFUL if status.state in UNSUCCESSFUL_STATES else Exit.OK)


def _detached(job_id: str, as_json: bool) -> NoReturn:
    say(f"stopped watching; job {job_id} runs on. Cancel it with: varia cancel {job_id}")
    if as_json:
        emit({"job_id": job_id, "detached": True})
    raise typer.Exit(int(Exit.INTERRUPTED))


async def _follow(jobs: Jobs, job_id: str, as_json: bool) -> JobStatus:
    from varia.cli.watch import follow

    if as_json:
        return await jobs.wait_closed(job_id)
    say(f"watching {job_id}; Ctrl-C stops watching (the job runs on)")
    return await follow(jobs, job_id, console)


# ---- job commands --------------------------------------------------------------------


@command(epilog=NEEDS)
def start(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUTS...", help="Input videos (made absolute).", show_default=False
        ),
    ],
    variations: Annotated[
        int, typer.Option("-n", "--variations", metavar="N", min=1, help="Variations per input.")
    ],
    output_dir: Annotated[
        Path,
        typer.Option("-o", "--output-dir", metavar="DIR", help="Where the job directory is made."),
    ],
    seed: Annotated[int, typer.Option(metavar="SEED", help="Seed of the recipes.")] = 0,
    concurrency: Annotated[int, typer.Option(metavar="C", min=1, help="Renders at once.")] = 1,
    threads: Annotated[
        int | None, typer.Option(metavar="T", min=1, help="FFmpeg -threads per render.")
    ] = None,
    job_id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="Job id (default: fresh).")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", metavar="", help="Follow the job to its end.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Start a job; print its id, job directory and Web UI link."""
    settings = settings_or_exit(as_json)
    request = JobRequest(
        inputs=[os.path.abspath(os.path.expanduser(p)) for p in inputs],
        variations=variations,
        output_dir=os.path.abspath(os.path.expanduser(output_dir)),
        seed=seed,
        concurrency=concurrency,
        threads=threads,
    )
    missing = [p for p in request.inputs if not os.path.isfile(p)]
    if missing:
        fail(Exit.USAGE, f"input not found: {missing[0]}", as_json)
    known: dict[str, str] = {}

    async def work() -> tuple[dict[str, Any], JobStatus | None]:
        jobs = await _open(settings)
        known["job_id"] = started_id = await jobs.start(request, job_id)
        started = {
            "job_id": started_id,
            "job_dir": str(Path(request.output_dir) / started_id),
            "ui_url": jobs.ui_link(started_id),
            "task_queue": settings.task_queue,
        }
        if not watch:
            return started, None
        if not as_json:
            render.print_started(console, started)
        return started, await _follow(jobs, started_id, as_json)

    try:
        started, final = run(as_json, work)
    except KeyboardInterrupt:
        _detached(known.get("job_id", job_id or "<job id>"), as_json)
    if as_json:
        emit({**started, **({"status": final.model_dump(mode="json")} if final else {})})
    elif final is None:
        render.print_started(console, started)
    else:
        render.print_final(console, final)
    raise typer.Exit(_exit_for(final) if final else 0)


@command()
def watch(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Follow a job live until it closes (Ctrl-C only stops watching)."""
    settings = settings_or_exit(as_json)

    async def work() -> JobStatus:
        jobs = await _open(settings)
        status = await jobs.status(job_id)  # not found: fail before drawing
        return status if status.closed else await _follow(jobs, job_id, as_json)

    try:
        final = run(as_json, work)
    except KeyboardInterrupt:
        _detached(job_id, as_json)
    if as_json:
        emit(final.model_dump(mode="json"))
    else:
        render.print_final(console, final)
    raise typer.Exit(_exit_for(final))


@command()
def status(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show a job's state, progress, outputs, job directory and times."""
    settings = settings_or_exit(as_json)

    async def work() -> JobStatus:
        return await (await _open(settings)).status(job_id)

    result = run(as_json, work)
    if as_json:
        emit(result.model_dump(mode="json"))
    else:
        console.print(render.status_table(result))


def _stop(action: str, job_id: str, no_wait: bool, as_json: bool) -> None:
    settings = settings_or_exit(as_json)

    async def work() -> StopOutcome:
        jobs = await _open(settings)
        stop = jobs.cancel if action == "cancel" else jobs.drain
        return await stop(job_id, wait=not no_wait, notify=say)

    try:
        outcome = run(as_json, work)
    except KeyboardInterrupt:
        say(f"stopped waiting; the {action} of {job_id} stays requested")
        raise typer.Exit(int(Exit.INTERRUPTED)) from None
    if as_json:
        emit(outcome.model_dump(mode="json"))
    else:
        render.print_outcome(console, outcome)


@command()
def cancel(job_id: JobId, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Cancel a job: stop its renders, keep the finished variations, clean up (exit 0)."""
    _stop("cancel", job_id, no_wait, as_json)


@command()
def drain(job_id: JobId, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Drain a job: start no new variations, let running ones finish, then clean up."""
    _stop("drain", job_id, no_wait, as_json)


@command(name="list")
def list_command(
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help=f"Only jobs in this state: {', '.join(LIST_STATES)}."),
    ] = None,
    limit: Annotated[
        int, typer.Option(metavar="N", min=1, max=1000, help="At most this many.")
    ] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Recent jobs, newest first, with their state and progress."""
    if state is not None and state not in LIST_STATES:
        fail(Exit.USAGE, f"unknown state {state!r}; one of: {', '.join(LIST_STATES)}", as_json)
    settings = settings_or_exit(as_json)

    async def work() -> list[JobStatus]:
        return await (await _open(settings)).list(state=state, limit=limit)

    rows = run(as_json, work)
    if as_json:
        emit({"jobs": [row.model_dump(mode="json") for row in rows]})
    elif not rows:
        console.print("no jobs" + (f" in state {state}" if state else ""))
    else:
        console.print(render.list_table(rows))


# ---- processes -----------------------------------------------------------------------


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
        await run_worker(settings)

    run(as_json, work)
    if as_json:
        emit({"stopped": True, "task_queue": settings.task_queue})


@command()
def server(
    port: Annotated[int, typer.Option(metavar="PORT", help="gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(metavar="PORT", help="Web UI port.")] = 8233,
    ip: Annotated[str, typer.Option(metavar="IP", help="Address to bind.")] = "127.0.0.1",
    db: Annotated[
        Path | None, typer.Option(metavar="FILE", help="SQLite file (default: user data dir).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the embedded Temporal dev server with varia's search attributes registered."""
    from varia.server import DevServer, ServerError, default_db_path
    from varia.signals import stop_on_signals

    async def serve() -> None:
        with stop_on_signals() as stop:  # before anything starts: a SIGTERM is never fatal
            dev = DevServer(host=ip, port=port, ui_port=ui_port, db_path=db or default_db_path())
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
        code = asyncio.run(run_demo(shown, variations=variations, seconds=seconds, keep_dir=out))
    except KeyboardInterrupt:
        say("interrupted: everything the demo started was stopped")
        code = 130
    if as_json:
        emit({"exit_code": code})
    raise typer.Exit(code)


# ---- entry point ---------------------------------------------------------------------


def _usage_error(err: click.exceptions.ClickException, as_json: bool) -> int:
    """A usage error: click's own message for people; with `--json`, the error object too."""
    from typer import rich_utils

    rich_utils.rich_format_error(err)
    if as_json:
        emit({"error": err.format_message(), "exit_code": err.exit_code})
    return int(err.exit_code)


def main() -> None:
    """Entry point of the `varia` console script.

    Ends with `os._exit` after flushing: the Temporal SDK's Rust threads may still touch the
    interpreter while it finalizes, which can abort a finished command at exit
    (temporalio/sdk-python#300).
    """
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.NoArgsIsHelpError as err:
        if err.format_message():  # rich help printed itself already
            err.show()
        code = 0
    except click.exceptions.ClickException as err:
        code = _usage_error(err, wants_json(sys.argv))
    except typer.Abort:
        say("aborted")
        code = 1
    except SystemExit as done:  # e.g. a closed pipe while printing
        code = done.code if isinstance(done.code, int) else 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
