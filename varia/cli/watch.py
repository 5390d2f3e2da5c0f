"""Following a job: live bars on a terminal, one plain line every few seconds elsewhere.

Counts come from the job's status (the `progress` query, or, without a worker, the job's
description with a hint that no worker polls); each running variation's percent, fps, speed
and ETA from its render's heartbeat details. Both come from one describe per refresh.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from varia.cli.render import counts, plain_progress, state_line
from varia.client.jobs import Jobs
from varia.client.records import JobStatus
from varia.models import RenderHeartbeat
from varia.names import parse_temp_name

POLL_S = 0.5
"""Seconds between two refreshes of the live view."""

PLAIN_EVERY_S = 5.0
"""Seconds between two plain progress lines when the output is not a terminal."""


def overall_line(status: JobStatus) -> str:
    """The overall bar's label: state, counts, the job's percent, and what to do when no
    worker serves it."""
    label = f"[bold]{state_line(status)}[/] {counts(status)}"
    if status.percent is not None:
        label += f" · {status.percent:g}%"
    return f"{label} [yellow]{status.hint}[/]" if status.hint else label


def beat_line(beat: RenderHeartbeat) -> str:
    """A variation bar's figures: fps, speed and ETA (blank while FFmpeg has not said)."""
    fps = f"{beat.fps:.0f} fps" if beat.fps is not None else "- fps"
    speed = f"{beat.speed:.2f}x" if beat.speed is not None else "-x"
    eta = f"ETA {beat.eta_s:.0f}s" if beat.eta_s is not None else "ETA -"
    return f"{fps} {speed} {eta}"


def output_label(output: str) -> str:
    """The final output name of a render from its heartbeat's `output` (older workers sent
    the temporary path there)."""
    name = Path(output).name
    return parse_temp_name(name) or name


def new_bars(console: Console) -> Progress:
    """The rich progress display the view draws into."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[figures]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class LiveView:
    """Keeps the bars of one job in step with its status and heartbeats."""

    def __init__(self, bars: Progress) -> None:
        self.bars = bars
        self.overall = bars.add_task("starting…", total=None, figures="")
        self.variations: dict[str, TaskID] = {}

    def update(self, status: JobStatus, beats: dict[str, RenderHeartbeat]) -> None:
        """Redraw from a fresh status and the running renders' heartbeats."""
        self.bars.update(
            self.overall,
            description=overall_line(status),
            total=100 if status.total else None,
            completed=status.percent or 0.0,
        )
        for activity_id in set(self.variations) - set(beats):
            self.bars.remove_task(self.variations.pop(activity_id))
        for activity_id, beat in sorted(beats.items()):
            label = f"  {output_label(beat.output) or activity_id}"
            if activity_id not in self.variations:
                self.variations[activity_id] = self.bars.add_task(label, total=100, figures="")
            self.bars.update(
                self.variations[activity_id],
                description=label,
                completed=beat.percent,
                figures=beat_line(beat),
            )


async def follow(jobs: Jobs, job_id: str, console: Console, *, poll_s: float = POLL_S) -> JobStatus:
    """Show the job until it closes (bars on a terminal, plain lines elsewhere); returns its
    final status. Cancelling the caller (Ctrl-C) only stops watching: the job runs on."""
    if not console.is_terminal:
        return await follow_plain(jobs, job_id, console)
    with new_bars(console) as bars:
        view = LiveView(bars)
        while True:
            status, beats = await jobs.snapshot(job_id)
            view.update(status, beats)
            if status.closed:
                return status
            await asyncio.sleep(poll_s)


async def follow_plain(
    jobs: Jobs, job_id: str, console: Console, *, every_s: float = PLAIN_EVERY_S
) -> JobStatus:
    """One plain progress line now and every `every_s` seconds until the job closes."""
    last_line = float("-inf")
    while True:
        status = await jobs.status(job_id)
        if status.closed:
            return status
        if time.monotonic() - last_line >= every_s:
            console.print(plain_progress(status), markup=False, highlight=False)
            last_line = time.monotonic()
        await asyncio.sleep(POLL_S)
