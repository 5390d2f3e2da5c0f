"""A job's real percent: finished variations plus the running renders' fractions (pure).

The workflow, the `progress` query, current details, the `VariaPercent` search attribute and
the CLI all use this one function, so they show the same number.
"""

from __future__ import annotations

from collections.abc import Iterable

PROGRESS_STEPS = (0.25, 0.5, 0.75)
"""Fractions at which a long render tells its workflow how far it is."""


def weighted_percent(total: int, finished: int, fractions: Iterable[float]) -> float:
    """100 * (finished + sum of running fractions) / total, rounded to 0.1; 0 for an empty job.

    Each fraction is clamped to [0, 1) (a render is finished only when its result is in);
    a job with unfinished variations never shows 100 (at most 99.9).
    """
    if total <= 0:
        return 0.0
    running = sum(min(max(f, 0.0), 0.999) for f in fractions)
    percent = round(min(100.0, max(0.0, 100.0 * (finished + running) / total)), 1)
    return min(percent, 99.9) if finished < total else percent


def next_step(fraction: float, sent: float) -> float | None:
    """The highest progress step `fraction` has reached beyond `sent`, if any."""
    reached = [step for step in PROGRESS_STEPS if sent < step <= fraction]
    return reached[-1] if reached else None


def job_eta_s(percent: float, percent_then: float, seconds_since: float) -> float | None:
    """Seconds left at the pace since `percent_then` was seen `seconds_since` ago."""
    gained = percent - percent_then
    if gained <= 0 or seconds_since <= 0:
        return None
    return round((100.0 - percent) * seconds_since / gained, 0)
