"""How the CLI shows jobs to a person: status table, list table, final lines, stop outcomes.

Pure functions of `JobStatus` / `StopOutcome` (no Temporal calls), so `status`, `list`,
`watch` and `cancel` word the same facts the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from varia.client.records import UNSUCCESSFUL_STATES, JobStatus, StopOutcome
from varia.models import QualitySummary


def when(moment: datetime | None) -> str:
    """A local time for a person, `-` when unknown."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def counts(status: JobStatus) -> str:
    """`done/total done, F failed, R running` (`?` where unknown)."""
    total = "?" if status.total is None else str(status.total)
    done = "?" if status.completed is None else str(status.completed)
    text = f"{done}/{total} done"
    if status.failed:
        text += f", {status.failed} failed"
    if status.running:
        text += f", {status.running} running"
    return text


def percent(status: JobStatus) -> str:
    """` (P%)` when the percent is known (the job's weighted percent, to 0.1)."""
    return f" ({status.percent:g}%)" if status.percent is not None else ""


def state_line(status: JobStatus) -> str:
    """The state, with `cancel requested` / `draining` while the job still runs."""
    if status.closed:
        return status.state
    notes = [
        note
        for note, on in (
            ("cancel requested", status.cancel_requested),
            ("draining", status.draining),
        )
        if on and note.split()[0] not in status.state
    ]
    return " · ".join([status.state, *notes])


def plain_progress(status: JobStatus) -> str:
    """One plain line (for logs and pipes): state, counts, percent, and a hint if stuck."""
    line = f"{state_line(status)}: {counts(status)}{percent(status)}"
    return f"{line} — {status.hint}" if status.hint else line


def status_table(status: JobStatus) -> Table:
    """`varia status` for a person."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a narrow terminal folds a link, never cuts it
    rows = [
        ("job", status.job_id),
        ("state", state_line(status)),
        ("progress", counts(status) + percent(status)),
        ("outputs", "-" if status.outputs is None else str(status.outputs)),
        ("job dir", status.job_dir or "-"),
        ("manifest", status.manifest or "-"),
        ("started", when(status.started)),
        ("closed", when(status.closed_at)),
        ("Web UI", status.ui_url or "-"),
    ]
    rows += [("contact sheet", path) for path in status.sheets]
    rows += [("quality", quality_line(status.quality))] if status.quality else []
    rows += [("rendering", name) for name in status.running_variations]
    rows += [("error", line) for line in status.errors[-3:]]
    rows += [("note", status.hint)] if status.hint else []
    for key, value in rows:
        table.add_row(key, escape(value))
    return table


def quality_line(summary: dict[str, Any]) -> str:
    """One line of a job's quality summary (as its manifest records it)."""
    try:
        return QualitySummary.model_validate(summary).line()
    except ValueError:
        return "unreadable"


def list_table(rows: list[JobStatus]) -> Table:
    """`varia list` for a person (job ids, states and times are never cut or wrapped)."""
    table = Table("job", "state", "progress", "started", "closed")
    table.columns[0].min_width = max(len(row.job_id) for row in rows)
    table.columns[1].min_width = max(len(row.state) for row in rows)
    for column in table.columns[3:]:
        column.no_wrap = True
    for row in rows:
        table.add_row(
            escape(row.job_id),
            row.state,
            counts(row) + percent(row),
            when(row.started),
            when(row.closed_at),
        )
    return table


def print_started(console: Console, started: dict[str, Any]) -> None:
    """What `varia start` prints."""
    job = started["job_id"]
    console.print(f"started job [bold]{escape(job)}[/]")
    console.print(f"  job dir: {escape(started['job_dir'])}", highlight=False)
    console.print(f"  Web UI:  {escape(started['ui_url'])}", highlight=False)
    console.print(f"  seed:    {started['seed']} (pass --seed {started['seed']} to reproduce)")
    console.print(f"  follow:  varia watch {job}    stop: varia cancel {job}", highlight=False)


def print_final(console: Console, status: JobStatus) -> None:
    """The last line of `watch` / `start --watch`."""
    colour = "red" if status.state in UNSUCCESSFUL_STATES else "green"
    outputs = f", outputs in {escape(status.job_dir)}" if status.job_dir else ""
    console.print(f"[{colour}]{status.state}[/]: {counts(status)}{outputs}")
    for line in status.errors[-3:]:
        console.print(f"  error: {escape(line)}")


def print_outcome(console: Console, outcome: StopOutcome) -> None:
    """What `varia cancel` / `varia drain` print."""
    kept = f"{outcome.kept if outcome.kept is not None else '?'} of {outcome.total or '?'}"
    closed = when(outcome.closed_at)
    if outcome.already_closed:
        line = (
            f"job {escape(outcome.job_id)} had already closed: {outcome.state} "
            f"({kept} variations kept) at {closed}"
        )
    elif not outcome.waited:
        line = (
            f"{outcome.action} requested for {escape(outcome.job_id)}; it closes once its "
            f"renders have stopped and cleanup ran (follow: varia watch {escape(outcome.job_id)})"
        )
    elif outcome.action == "cancel" and outcome.state == "completed":
        line = (
            f"completed: all {kept} variations finished before the cancel took effect "
            f"(closed {closed})"
        )
    elif outcome.action == "cancel" and outcome.state == "cancelled":
        line = f"cancelled: {kept} variations kept (cancelled at {closed})"
    else:
        line = f"{outcome.state}: {kept} variations kept (closed {closed})"
    console.print(line)
    if outcome.manifest:
        console.print(f"  manifest: {escape(outcome.manifest)}", highlight=False)
