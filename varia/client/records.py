"""What the client layer reports: a job's status and a stop's outcome (plain pydantic models,
no Temporal import, so rendering them is cheap)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from varia.percent import weighted_percent

UNSUCCESSFUL_STATES = frozenset({"failed", "cancelled", "terminated", "timed_out"})
"""Final states for which following a job ends with exit code 1."""


class JobStatus(BaseModel):
    """A job as `varia status`, `varia watch` and `varia list` show it."""

    job_id: str
    state: str
    closed: bool
    total: int | None = None
    completed: int | None = None
    failed: int | None = None
    running: int | None = None
    percent: float | None = None
    outputs: int | None = Field(default=None, description="Outputs kept (from the manifest).")
    job_dir: str | None = None
    manifest: str | None = None
    task_queue: str | None = None
    started: datetime | None = None
    closed_at: datetime | None = None
    draining: bool = False
    cancel_requested: bool = False
    running_variations: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    live: bool = Field(default=False, description="Counts come from the progress query.")
    workers: bool | None = Field(
        default=None, description="Whether a worker polls the task queue (running jobs only)."
    )
    hint: str | None = Field(default=None, description="What to do, when the job cannot move.")
    ui_url: str | None = None
    sheet: str | None = Field(default=None, description="The contact sheet (from the manifest).")
    sheets: list[str] = Field(default_factory=list, description="All contact sheets.")
    quality: dict[str, Any] | None = Field(
        default=None, description="Minimum and median of the measured differences (manifest)."
    )


class StopOutcome(BaseModel):
    """What `varia cancel` / `varia drain` report."""

    job_id: str
    action: str
    requested: bool
    already_closed: bool
    waited: bool
    state: str
    total: int | None = None
    kept: int | None = None
    failed: int | None = None
    closed_at: datetime | None = None
    job_dir: str | None = None
    manifest: str | None = None


def finished_percent(completed: int | None, failed: int | None, total: int | None) -> float | None:
    """Finished (completed or failed) variations as a percent of all; None without a total.

    The job's own formula (`varia.percent.weighted_percent`) with no running fractions: a
    job with unfinished variations never reads 100.
    """
    if not total:
        return None
    return weighted_percent(total, (completed or 0) + (failed or 0), ())


def stop_outcome(action: str, status: JobStatus, *, requested: bool, already: bool) -> StopOutcome:
    """How a cancel or drain ended, from the job's status."""
    return StopOutcome(
        job_id=status.job_id,
        action=action,
        requested=requested,
        already_closed=already,
        waited=status.closed and not already,
        state=status.state,
        total=status.total,
        kept=status.outputs if status.outputs is not None else status.completed,
        failed=status.failed,
        closed_at=status.closed_at,
        job_dir=status.job_dir,
        manifest=status.manifest,
    )
