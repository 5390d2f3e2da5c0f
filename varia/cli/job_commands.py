"""The job commands: start, watch, status, cancel, drain, pause, resume, list (through `Jobs`
only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from varia.cli import render
from varia.cli.app import NEEDS, JobId, JsonFlag, NoWait, command
from varia.cli.exits import Exit, console, emit, fail, run, say, settings_or_exit
from varia.client.records import UNSUCCESSFUL_STATES, JobStatus, StopOutcome
from varia.config import Settings
from varia.models import MAX_THREADS, JobRequest, JobState
from varia.recipes import resolve_seed

if TYPE_CHECKING:
    from varia.client.jobs import Jobs

LIST_STATES = sorted(JobState.__args__)  # type: ignore[attr-defined]


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


def absolute(path: str | os.PathLike[str]) -> str:
    """`path` made absolute as the shell means it: `~` expanded and joined to the working
    directory; tidied (`./`, `//`, `..` collapsed as text) only where the tidy path names the
    same file or, like it, none (collapsing `link/../clip.mp4` as text named another clip)."""
    joined = os.path.join(os.getcwd(), os.path.expanduser(os.fspath(path)))
    tidy = os.path.normpath(joined)
    return tidy if _same_file(tidy, joined) else joined


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samestat(os.stat(one), os.stat(other))
    except OSError:
        return not (os.path.exists(one) or os.path.exists(other))


def output_dir_problem(path: str) -> str | None:
    """Why `path` cannot be a job's output dir: it, or the nearest parent that exists, is not
    a directory (None: it is one, or the job can make it)."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir():
        return None
    if existing == Path(path):
        return f"output dir exists and is not a directory: {path}"
    return f"output dir cannot be made: {existing} is not a directory ({path})"


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
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="SEED", help="Seed of the recipes (default: derived from the job id)."
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(metavar="C", min=1, help="Renders at once.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(metavar="T", min=1, max=MAX_THREADS, help="FFmpeg -threads per render."),
    ] = None,
    job_id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="Job id (default: fresh).")
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(metavar="P", min=1, max=5, help="Render priority: 1 first … 5 last (3)."),
    ] = None,
    fairness_key: Annotated[
        str | None,
        typer.Option(metavar="KEY", help="Share the fleet fairly per key (default: the job id)."),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", metavar="", help="Follow the job to its end.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Start a job; print its id, job directory and Web UI link."""
    settings = settings_or_exit(as_json)
    request = JobRequest(
        inputs=[absolute(p) for p in inputs],
        variations=variations,
        output_dir=absolute(output_dir),
        seed=seed,
        concurrency=concurrency,
        threads=threads,
        priority=priority,
        fairness_key=fairness_key,
    )
    for path in request.inputs:
        if not os.path.exists(path):
            fail(Exit.USAGE, f"input not found: {path}", as_json)
        if not os.path.isfile(path):
            what = "a directory, fifo or device"
            fail(Exit.USAGE, f"input is not a regular file ({what}): {path}", as_json)
    unusable = output_dir_problem(request.output_dir)
    if unusable:
        fail(Exit.USAGE, unusable, as_json)
    known: dict[str, str] = {}

    async def work() -> tuple[dict[str, Any], JobStatus | None]:
        jobs = await _open(settings)
        known["job_id"] = started_id = await jobs.start(request, job_id)
        started = {
            "job_id": started_id,
            "job_dir": str(Path(request.output_dir) / started_id),
            "ui_url": jobs.ui_link(started_id),
            "task_queue": settings.task_queue,
            "seed": resolve_seed(request.seed, started_id),
            "workers": await _workers_or_none(jobs, settings.task_queue),
        }
        if started["workers"] is False and not (as_json or watch):
            from varia.client.pollers import no_worker_hint

            say(f"varia: {no_worker_hint(settings.task_queue)}; the job starts when one does")
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


async def _workers_or_none(jobs: Jobs, task_queue: str) -> bool | None:
    """Whether a worker polls `task_queue`; None if that cannot be told (the job has started,
    so a failed check must not fail `start`)."""
    from varia.client.errors import ClientProblem

    try:
        return await jobs.has_workers(task_queue)
    except ClientProblem:
        return None


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


def _stopped_waiting(action: str, job_id: str, taken: bool, as_json: bool) -> NoReturn:
    """Ctrl-C while a cancel, drain, pause or resume waited: say whether it was delivered."""
    if taken:
        say(f"stopped waiting; the {action} of {job_id} stays requested")
    else:
        say(
            f"stopped waiting: no worker took the {action} of {job_id}, so it was not "
            "delivered. The server may still hand it to the next worker that polls (it holds "
            f"it in memory only, a restart forgets it): check with varia status {job_id}"
        )
    if as_json:
        emit({"job_id": job_id, "action": action, "taken": taken, "interrupted": True})
    raise typer.Exit(int(Exit.INTERRUPTED))


def _stop(action: str, job_id: str, no_wait: bool, as_json: bool) -> None:
    settings = settings_or_exit(as_json)
    taken: list[bool] = []

    async def work() -> StopOutcome:
        jobs = await _open(settings)
        stop = jobs.cancel if action == "cancel" else jobs.drain
        return await stop(job_id, wait=not no_wait, notify=say, taken=lambda: taken.append(True))

    try:
        outcome = run(as_json, work)
    except KeyboardInterrupt:
        _stopped_waiting(action, job_id, bool(taken), as_json)
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
    """Drain a job: start no new variations, let running ones finish, then clean up.

    A drain is a Temporal update: it is delivered only when a worker accepts it, so it waits
    for a worker polling the job's task queue, even with --no-wait (Ctrl-C stops waiting)."""
    _stop("drain", job_id, no_wait, as_json)


def _pause_or_resume(action: str, job_id: str, as_json: bool) -> None:
    settings = settings_or_exit(as_json)
    taken: list[bool] = []

    async def work() -> JobStatus:
        jobs = await _open(settings)
        send = jobs.pause if action == "pause" else jobs.resume
        return await send(job_id, notify=say, taken=lambda: taken.append(True))

    try:
        result = run(as_json, work)
    except KeyboardInterrupt:
        _stopped_waiting(action, job_id, bool(taken), as_json)
    if as_json:
        emit(result.model_dump(mode="json"))
    else:
        console.print(render.plain_progress(result), highlight=False)


@command()
def pause(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Pause a job: running renders stop (partials removed), nothing new starts, no slot held.

    A pause is a Temporal update: it is delivered only when a worker accepts it, so it waits for
    a worker polling the job's task queue (Ctrl-C stops waiting)."""
    _pause_or_resume("pause", job_id, as_json)


@command()
def resume(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Resume a paused job: finished variations stay, stopped ones render again."""
    _pause_or_resume("resume", job_id, as_json)


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
