"""The commands about what came out: `verify` (a job directory against its manifest) and
`sheet` (where a job's contact sheets are). The checks live in `varia.verify`; the sheet paths
come from the job's status (`Jobs.status`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from varia.cli.app import JobId, JsonFlag, command
from varia.cli.exits import Exit, console, emit, fail, run, settings_or_exit
from varia.client.records import JobStatus


@command()
def verify(
    job_dir: Annotated[
        Path, typer.Argument(metavar="DIR", help="A job directory.", show_default=False)
    ],
    as_json: JsonFlag = False,
) -> None:
    """Re-check a job directory against its manifest (exit 1 naming each problem)."""
    from varia.verify import verify_job_dir

    if not job_dir.is_dir():
        fail(Exit.USAGE, f"{job_dir} is not a directory", as_json)
    report = verify_job_dir(job_dir.absolute())
    if as_json:
        emit(report.model_dump(mode="json"))
    else:
        for line in report.problems:
            console.print(f"[red]problem[/]: {escape(line)}", highlight=False)
        for line in report.notes:
            console.print(f"note: {escape(line)}", highlight=False)
        verdict = "[green]ok[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
        console.print(
            f"{verdict}: {report.verified} file(s) verified of {report.outputs} output(s) "
            f"and the contact sheets in {escape(report.job_dir)}",
            highlight=False,
        )
    raise typer.Exit(int(Exit.OK if report.ok else Exit.JOB_UNSUCCESSFUL))


@command()
def sheet(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Print the path of a job's contact sheet (exit 1 if it has none)."""
    settings = settings_or_exit(as_json)

    async def work() -> JobStatus:
        from varia.client.jobs import Jobs

        return await (await Jobs.open(settings)).status(job_id)

    status = run(as_json, work)
    if not status.sheets:
        why = "nothing was kept" if status.closed else f"it is {status.state}"
        fail(Exit.JOB_UNSUCCESSFUL, f"job {job_id} has no contact sheet ({why})", as_json)
    if as_json:
        emit({"job_id": job_id, "sheet": status.sheet, "sheets": status.sheets})
    else:
        for path in status.sheets:
            console.print(escape(path), highlight=False, soft_wrap=True)
