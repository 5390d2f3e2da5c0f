"""The `varia` command line.

Exit codes: 0 ok, 1 the job failed or was cancelled (or a Temporal error), 2 usage error,
3 job not found, 4 server unreachable, 130 stopped watching with Ctrl-C (the job runs on).
With `--json` every command prints exactly one JSON object on stdout (errors too:
`{"error": …, "exit_code": …}`); messages for people go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from varia.config import Settings, SettingsError, load_settings, settings_help
from varia.control import StopOutcome, cancel_job, drain_job
from varia.jobinfo import (
    UNSUCCESSFUL_STATES,
    JobNotFound,
    JobStatus,
    ServerUnreachable,
    job_status,
    list_jobs,
    open_client,
    ui_link,
)
from varia.models import JobRequest, JobState
from varia.search_attributes import registered_search_attributes
from varia.validation import RequestError

T = TypeVar("T")

app = typer.Typer(
    name="varia",
    help="Durable video-variation renderer on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

LIST_STATES = sorted(JobState.__args__)  # type: ignore[attr-defined]


class Exit(IntEnum):
    """The documented exit codes."""

    OK = 0
    JOB_UNSUCCESSFUL = 1
    USAGE = 2
    NOT_FOUND = 3
    UNREACHABLE = 4
    INTERRUPTED = 130


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (for scripts).")
]
JobId = Annotated[str, typer.Argument(help="The job (workflow) id.", show_default=False)]


# ---- output helpers ------------------------------------------------------------------


def _emit(payload: dict[str, Any]) -> None:
    """Write the one JSON object of a `--json` command to stdout."""
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def _fail(code: Exit, message: str, as_json: bool) -> NoReturn:
    """Print one clear line (and the JSON error object with `--json`), then exit."""
    err_console.print(f"varia: {message}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        _emit({"error": message, "exit_code": int(code)})
    raise typer.Exit(int(code))


def _settings(as_json: bool = False) -> Settings:
    try:
        return load_settings()
    except SettingsError as err:
        _fail(Exit.USAGE, str(err), as_json)


def _run(as_json: bool, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `work`, mapping varia's errors to their exit codes and one line each."""
    try:
        return asyncio.run(work())
    except ServerUnreachable as err:
        _fail(Exit.UNREACHABLE, str(err), as_json)
    except JobNotFound as err:
        _fail(Exit.NOT_FOUND, str(err), as_json)
    except (RequestError, SettingsError) as err:
        _fail(Exit.USAGE, str(err), as_json)
    except RPCError as err:
        _fail(Exit.JOB_UNSUCCESSFUL, f"Temporal said: {err.message}", as_json)


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _counts(status: JobStatus) -> str:
    total = "?" if status.total is None else str(status.total)
    text = f"{status.completed if status.completed is not None else '?'}/{total} done"
    if status.failed:
        text += f", {status.failed} failed"
    if status.running:
        text += f", {status.running} running"
    return text


def _exit_for(status: JobStatus) -> Exit:
    return Exit.JOB_UNSUCCESSFUL if status.state in UNSUCCESSFUL_STATES else Exit.OK


def _status_table(status: JobStatus) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    percent = f" ({status.percent:g}%)" if status.percent is not None else ""
    rows = [
        ("job", status.job_id),
        ("state", status.state + (" · cancel requested" if status.cancel_requested else "")),
        ("progress", _counts(status) + percent),
        ("outputs", "-" if status.outputs is None else str(status.outputs)),
        ("job dir", status.job_dir or "-"),
        ("manifest", status.manifest or "-"),
        ("started", _when(status.started)),
        ("closed", _when(status.closed_at)),
        ("Web UI", status.ui_url or "-"),
    ]
    rows += [("rendering", name) for name in status.running_variations]
    rows += [("error", line) for line in status.errors[-3:]]
    for key, value in rows:
        table.add_row(key, escape(value))
    return table


# ---- job commands --------------------------------------------------------------------


@app.command()
def start(
    inputs: Annotated[
        list[Path], typer.Argument(help="Input videos (made absolute).", show_default=False)
    ],
    variations: Annotated[
        int, typer.Option("-n", "--variations", min=1, help="Variations per input.")
    ],
    output_dir: Annotated[
        Path, typer.Option("-o", "--output-dir", help="Where the job directory is made.")
    ],
    seed: Annotated[
        int | None, typer.Option(help="Seed of the recipes (default: derived from the job id).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Renders at once.")] = 1,
    threads: Annotated[int | None, typer.Option(min=1, help="FFmpeg -threads per render.")] = None,
    job_id: Annotated[str | None, typer.Option("--id", help="Job id (default: fresh).")] = None,
    priority: Annotated[
        int | None, typer.Option(min=1, max=5, help="Render priority: 1 first … 5 last (3).")
    ] = None,
    fairness_key: Annotated[
        str | None, typer.Option(help="Share the fleet fairly per key (default: the job id).")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow the job to its end.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Start a job; print its id, job directory and Web UI link."""
    from varia.recipes import resolve_seed
    from varia.starter import start_job

    settings = _settings(as_json)
    request = JobRequest(
        inputs=[os.path.abspath(os.path.expanduser(p)) for p in inputs],
        variations=variations,
        output_dir=os.path.abspath(os.path.expanduser(output_dir)),
        seed=seed,
        concurrency=concurrency,
        threads=threads,
        priority=priority,
        fairness_key=fairness_key,
    )
    missing = [p for p in request.inputs if not os.path.isfile(p)]
    if missing:
        _fail(Exit.USAGE, f"input not found: {missing[0]}", as_json)

    known: dict[str, str] = {}

    async def work() -> tuple[dict[str, Any], JobStatus | None]:
        client = await open_client(settings)
        try:
            handle = await start_job(client, request, task_queue=settings.task_queue, job_id=job_id)
        except WorkflowAlreadyStartedError:
            raise RequestError(f"a job with id {job_id!r} already exists") from None
        known["job_id"] = handle.id
        started = {
            "job_id": handle.id,
            "job_dir": str(Path(request.output_dir) / handle.id),
            "ui_url": ui_link(settings, handle.id),
            "task_queue": settings.task_queue,
            "seed": resolve_seed(request.seed, handle.id),
        }
        if not watch:
            return started, None
        if not as_json:
            _print_started(started)
        return started, await _follow(client, settings, handle.id, as_json)

    try:
        started, final = _run(as_json, work)
    except KeyboardInterrupt:
        _detached(known.get("job_id", job_id or "<job id>"), as_json)
    if as_json:
        _emit({**started, **({"status": final.model_dump(mode="json")} if final else {})})
    elif final is None:
        _print_started(started)
    else:
        _print_final(final)
    raise typer.Exit(int(_exit_for(final)) if final else 0)


def _print_started(started: dict[str, Any]) -> None:
    job = started["job_id"]
    console.print(f"started job [bold]{escape(job)}[/]")
    console.print(f"  job dir: {escape(started['job_dir'])}", highlight=False)
    console.print(f"  Web UI:  {escape(started['ui_url'])}", highlight=False)
    console.print(f"  seed:    {started['seed']} (pass --seed {started['seed']} to reproduce)")
    console.print(f"  follow:  varia watch {job}    stop: varia cancel {job}", highlight=False)


def _print_final(status: JobStatus) -> None:
    colour = "red" if status.state in UNSUCCESSFUL_STATES else "green"
    console.print(
        f"[{colour}]{status.state}[/]: {_counts(status)}"
        + (f", outputs in {escape(status.job_dir)}" if status.job_dir else "")
    )
    for line in status.errors[-3:]:
        console.print(f"  error: {escape(line)}")


async def _follow(client: Client, settings: Settings, job_id: str, as_json: bool) -> JobStatus:
    from varia.watch import follow, wait_quietly

    if as_json:
        return await wait_quietly(client, settings, job_id)
    err_console.print(f"watching {job_id}; Ctrl-C stops watching (the job runs on)", markup=False)
    return await follow(client, settings, job_id, console)


def _detached(job_id: str, as_json: bool) -> NoReturn:
    message = f"stopped watching; job {job_id} runs on. Cancel it with: varia cancel {job_id}"
    err_console.print(message, markup=False, highlight=False)
    if as_json:
        _emit({"job_id": job_id, "detached": True})
    raise typer.Exit(int(Exit.INTERRUPTED))


@app.command()
def watch(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Follow a job live until it closes (Ctrl-C only stops watching)."""
    settings = _settings(as_json)

    async def work() -> JobStatus:
        client = await open_client(settings)
        await job_status(client, settings, job_id)  # not found: fail before drawing
        return await _follow(client, settings, job_id, as_json)

    try:
        final = _run(as_json, work)
    except KeyboardInterrupt:
        _detached(job_id, as_json)
    if as_json:
        _emit(final.model_dump(mode="json"))
    else:
        _print_final(final)
    raise typer.Exit(int(_exit_for(final)))


@app.command()
def status(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show a job's state, progress, outputs, job directory and times."""
    settings = _settings(as_json)

    async def work() -> JobStatus:
        return await job_status(await open_client(settings), settings, job_id)

    result = _run(as_json, work)
    if as_json:
        _emit(result.model_dump(mode="json"))
    else:
        console.print(_status_table(result))


def _print_outcome(outcome: StopOutcome) -> None:
    kept = f"{outcome.kept if outcome.kept is not None else '?'} of {outcome.total or '?'}"
    when = _when(outcome.closed_at)
    if outcome.already_closed:
        console.print(
            f"job {escape(outcome.job_id)} had already closed: {outcome.state} "
            f"({kept} variations kept) at {when}"
        )
    elif not outcome.waited:
        verb = "cancel" if outcome.action == "cancel" else "drain"
        console.print(
            f"{verb} requested for {escape(outcome.job_id)}; it closes once its renders have "
            f"stopped and cleanup ran (follow: varia watch {escape(outcome.job_id)})"
        )
    elif outcome.action == "cancel" and outcome.state == "completed":
        console.print(
            f"completed: all {kept} variations finished before the cancel took effect "
            f"(closed {when})"
        )
    elif outcome.action == "cancel" and outcome.state == "cancelled":
        console.print(f"cancelled: {kept} variations kept (cancelled at {when})")
    else:
        console.print(f"{outcome.state}: {kept} variations kept (closed {when})")
    if outcome.manifest:
        console.print(f"  manifest: {escape(outcome.manifest)}", highlight=False)


def _stop(action: str, job_id: str, no_wait: bool, as_json: bool) -> None:
    settings = _settings(as_json)
    stop = cancel_job if action == "cancel" else drain_job

    def notify(message: str) -> None:
        err_console.print(message, markup=False, highlight=False)

    async def work() -> StopOutcome:
        client = await open_client(settings)
        return await stop(client, settings, job_id, wait=not no_wait, notify=notify)

    try:
        outcome = _run(as_json, work)
    except KeyboardInterrupt:
        err_console.print(f"stopped waiting; the {action} of {job_id} stays requested")
        raise typer.Exit(int(Exit.INTERRUPTED)) from None
    if as_json:
        _emit(outcome.model_dump(mode="json"))
    else:
        _print_outcome(outcome)


NoWait = Annotated[
    bool, typer.Option("--no-wait", help="Only request it; do not wait until the job closed.")
]


@app.command()
def cancel(job_id: JobId, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Cancel a job: stop its renders, keep the finished variations, clean up (exit 0)."""
    _stop("cancel", job_id, no_wait, as_json)


@app.command()
def drain(job_id: JobId, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Drain a job: start no new variations, let running ones finish, then clean up."""
    _stop("drain", job_id, no_wait, as_json)


def _pause_or_resume(action: str, job_id: str, as_json: bool) -> None:
    from varia.control import NotPausable, pause_job, resume_job

    settings = _settings(as_json)
    change = pause_job if action == "pause" else resume_job

    async def work() -> JobStatus:
        client = await open_client(settings)
        try:
            return await change(client, settings, job_id)
        except NotPausable as err:
            raise RequestError(str(err)) from None

    status = _run(as_json, work)
    if as_json:
        _emit(status.model_dump(mode="json"))
    else:
        console.print(f"{escape(job_id)} is {status.state}: {_counts(status)}")


@app.command()
def pause(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Pause a job: running renders stop (partials removed), nothing new starts, no slot held."""
    _pause_or_resume("pause", job_id, as_json)


@app.command()
def resume(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Resume a paused job: finished variations stay, stopped ones render again."""
    _pause_or_resume("resume", job_id, as_json)


@app.command(name="list")
def list_command(
    state: Annotated[
        str | None, typer.Option(help=f"Only jobs in this state: {', '.join(LIST_STATES)}.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Recent jobs, newest first, with their state and progress."""
    if state is not None and state not in LIST_STATES:
        _fail(Exit.USAGE, f"unknown state {state!r}; one of: {', '.join(LIST_STATES)}", as_json)
    settings = _settings(as_json)

    async def work() -> list[JobStatus]:
        client = await open_client(settings)
        try:
            present = await registered_search_attributes(client, settings.temporal_namespace)
        except RPCError:
            present = []
        return await list_jobs(
            client, settings, state=state, limit=limit, with_attributes="VariaState" in present
        )

    rows = _run(as_json, work)
    if as_json:
        _emit({"jobs": [row.model_dump(mode="json") for row in rows]})
        return
    if not rows:
        console.print("no jobs" + (f" in state {state}" if state else ""))
        return
    table = Table("job", "state", "progress", "started", "closed")
    job_column, state_column = table.columns[0], table.columns[1]
    job_column.min_width = max(len(row.job_id) for row in rows)  # ids are never cut
    state_column.min_width = max(len(row.state) for row in rows)
    for row in rows:
        percent = f" ({row.percent:g}%)" if row.percent is not None else ""
        table.add_row(
            escape(row.job_id),
            row.state,
            _counts(row) + percent,
            _when(row.started),
            _when(row.closed_at),
        )
    console.print(table)


@app.command()
def janitor(
    grace: Annotated[
        float | None,
        typer.Option(min=0, help="Only jobs closed this many seconds ago (default: setting)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Clean up terminated and timed-out jobs once (the schedule does it every interval)."""
    from varia.janitor import JanitorRequest
    from varia.janitor_workflow import run_janitor_once

    settings = _settings(as_json)

    async def work() -> Any:
        client = await open_client(settings)
        return await run_janitor_once(client, settings.task_queue, JanitorRequest(grace_s=grace))

    report = _run(as_json, work)
    if as_json:
        _emit(report.model_dump(mode="json"))
        return
    console.print(
        f"examined {report.examined} closed job(s): {len(report.swept)} swept, "
        f"{report.already_clean} already had a manifest, {len(report.skipped)} left alone"
    )
    for job in report.swept:
        console.print(
            f"  swept {escape(job.job_id)}: {job.state}, {job.kept} kept, {job.removed} removed"
            f" ({escape(job.job_dir or '-')})",
            highlight=False,
        )
    for job in report.skipped:
        console.print(f"  left {escape(job.job_id)} alone: {escape(job.reason)}", highlight=False)


# ---- processes -----------------------------------------------------------------------


@app.command(epilog=settings_help())
def worker(as_json: JsonFlag = False) -> None:
    """Run a worker (SIGTERM/SIGINT stop it gracefully; renders in flight retry elsewhere)."""
    from varia.logs import configure_logging
    from varia.worker import run_worker

    settings = _settings(as_json)
    configure_logging(settings)

    async def work() -> None:
        await open_client(settings)  # unreachable server: one line, exit 4
        await run_worker(settings)

    _run(as_json, work)
    if as_json:
        _emit({"stopped": True, "task_queue": settings.task_queue})


@app.command()
def server(
    port: Annotated[
        int | None, typer.Option(help="gRPC port (default: TEMPORAL_ADDRESS's, 7233).")
    ] = None,
    ui_port: Annotated[int | None, typer.Option(help="Web UI port (default: port + 1000).")] = None,
    ip: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    db: Annotated[Path | None, typer.Option(help="SQLite file (default: user data dir).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the embedded Temporal dev server with varia's search attributes registered and
    the janitor schedule (`VARIA_JANITOR_INTERVAL`) created for `VARIA_TASK_QUEUE`."""
    from varia.server import DevServer, ServerError, default_db_path

    settings = _settings(as_json)
    port = port or urlsplit(f"//{settings.temporal_address}").port or 7233
    ui_port = ui_port or port + 1000  # where the CLI's links point by default

    async def serve() -> None:
        stop = _stop_on_signals()  # before anything starts: a SIGTERM is never fatal
        dev = DevServer(
            host=ip,
            port=port,
            ui_port=ui_port,
            db_path=db or default_db_path(),
            janitor_task_queue=settings.task_queue,
            janitor_interval_s=settings.janitor_interval_s,
        )
        async with dev:
            if as_json:
                _emit(
                    {
                        "address": dev.address,
                        "ui_url": dev.ui_url,
                        "pid": dev.process.pid if dev.process else None,
                    }
                )
            else:
                console.print(f"Temporal at {dev.address}, Web UI at {dev.ui_url}; Ctrl-C stops it")
            assert dev.process is not None
            await _until_set_or_exit(stop, dev.process)
        err_console.print("stopped")

    try:
        asyncio.run(serve())
    except ServerError as err:
        _fail(Exit.UNREACHABLE, str(err), as_json)
    except KeyboardInterrupt:
        err_console.print("stopped")


def _stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets (instead of ending the process)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _until_set_or_exit(stop: asyncio.Event, process: subprocess.Popen[bytes]) -> None:
    """Wait until `stop` is set or `process` exits, whichever comes first."""
    exited = asyncio.ensure_future(asyncio.to_thread(process.wait))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()


@app.command()
def demo(
    variations: Annotated[int, typer.Option("-n", "--variations", min=1, max=20)] = 3,
    seconds: Annotated[float, typer.Option(help="Length of the test clip.")] = 4.0,
    out: Annotated[Path | None, typer.Option(help="Where to keep the clip and outputs.")] = None,
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
        err_console.print("interrupted: everything the demo started was stopped")
        code = 130
    if as_json:
        _emit({"exit_code": code})
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the `varia` console script.

    Ends with `os._exit` after flushing: the Temporal SDK's Rust threads may still touch the
    interpreter while it finalizes, which can abort a finished command at exit
    (temporalio/sdk-python#300).
    """
    try:
        app()
        code: int = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
