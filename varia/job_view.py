"""What an operator sees of a running `VariationJob` beyond the `progress` query: the current
details (Web UI, "User Metadata") and the search attribute upserts. Pure functions of the
workflow's state: deterministic, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from temporalio.common import SearchAttributeUpdate, TypedSearchAttributes

from varia.models import JobResult, JobState, Progress
from varia.search_attributes import VARIA_COMPLETED, VARIA_PERCENT, VARIA_STATE, VARIA_TOTAL

DETAILS_RUNNING_SHOWN = 10
"""Running renders listed in the current details (the rest are counted in the head line)."""


def details_text(
    progress: Progress,
    fractions: Mapping[tuple[int, int], float],
    result: JobResult | None,
    outcome: list[str],
) -> str:
    """The current details: a head line, the cleanup's figures, the running renders with
    their coarse progress, the closed job's outcome lines and the last error (markdown)."""
    head = (
        f"**{progress.state}** · {progress.completed}/{progress.total} done"
        f" · {progress.failed} failed · {progress.running} running · {progress.percent:g}%"
    )
    if progress.queued:
        head += f" · {progress.queued} queued"
    if progress.eta_s is not None:
        head += f" · ETA {progress.eta_s:.0f}s"
    lines = [head]
    if result is not None:
        lines.append(
            f"\nkept {result.completed} · removed {result.removed} · manifest `{result.manifest}`"
        )
    for running in progress.running_variations[:DETAILS_RUNNING_SHOWN]:
        fraction = fractions.get((running.input_index, running.variation))
        lines.append(f"- rendering `{running.output}`" + (f" ({fraction:.0%})" if fraction else ""))
    lines += outcome
    if progress.errors:
        lines.append(f"\nlast error: {progress.errors[-1]}")
    return "\n".join(lines)


def outcome_lines(result: JobResult) -> list[str]:
    """Current-details lines of a closed job: its contact sheet and its quality in brief."""
    lines = [f"- contact sheet: `{path}`" for path in result.sheets]
    if result.quality is not None:
        lines.append(f"- quality {result.quality.line()}")
    return lines


def changed(values: list[SearchAttributeUpdate[Any]], current: TypedSearchAttributes) -> bool:
    """Whether an upsert of `values` would change any of the current search attributes."""
    return any(current.get(pair.key) != pair.value for pair in values)


def search_attribute_updates(
    present: list[str], state: JobState, completed: int, total: int, percent: float | None
) -> list[SearchAttributeUpdate[Any]]:
    """The upserts of varia's search attributes that the namespace has (`present`); upserting
    one it lacks would fail every workflow task. `percent` None: not upserted."""
    values: list[SearchAttributeUpdate[Any]] = []
    if VARIA_STATE.name in present:
        values.append(VARIA_STATE.value_set(state))
    if VARIA_COMPLETED.name in present:
        values.append(VARIA_COMPLETED.value_set(completed))
    if VARIA_TOTAL.name in present:
        values.append(VARIA_TOTAL.value_set(total))
    if percent is not None and VARIA_PERCENT.name in present:
        values.append(VARIA_PERCENT.value_set(percent))
    return values
