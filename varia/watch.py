"""The live view of a job: one overall bar and one bar per running variation.

Counts come from the `progress` query (or, without a worker, from the job's description);
each running variation's percent, fps, speed and ETA from its render's heartbeat details.
"""

from __future__ import annotations

import asyncio
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
from temporalio.client import Client

from varia.config import Settings
from varia.jobinfo import JobStatus, job_status
from varia.models import RenderHeartbeat
from varia.starter import render_heartbeats

POLL_S = 0.5
"""Seconds between two refreshes of the view."""


def overall_line(status: JobStatus) -> str:
    """The overall bar's label: state and done/failed/running of total."""
    total = "?" if status.total is None else status.total
    parts = [f"[bold]{status.state}[/] {status.completed or 0}/{total} done"]
    if status.percent is not None:
        parts.append(f"{status.percent:g}%")
    if status.failed:
        parts.append(f"[red]{status.failed} failed[/]")
    if status.running:
        parts.append(f"{status.running} running")
    if status.cancel_requested and not status.closed:
        parts.append("[yellow]cancel requested[/]")
    return " · ".join(parts)


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
    if name.startswith(".") and name.endswith(".part"):
        name = name[1 : -len(".part")]
    return name


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


async def follow(
    client: Client, settings: Settings, job_id: str, console: Console, *, poll_s: float = POLL_S
) -> JobStatus:
    """Show the live view until the job closes; returns its final status.

    Cancelling the caller (Ctrl-C) only stops watching: the job runs on.
    """
    with new_bars(console) as bars:
        view = LiveView(bars)
        while True:
            status = await job_status(client, settings, job_id)
            beats = {} if status.closed else await render_heartbeats(client, job_id)
            view.update(status, beats)
            if status.closed:
                return status
            await asyncio.sleep(poll_s)


async def wait_quietly(
    client: Client, settings: Settings, job_id: str, *, poll_s: float = POLL_S
) -> JobStatus:
    """Wait until the job closes without drawing anything (`--json`)."""
    while True:
        status = await job_status(client, settings, job_id)
        if status.closed:
            return status
        await asyncio.sleep(poll_s)
