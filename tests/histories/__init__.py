"""Recorded histories of `VariationJob` runs, replayed by `tests/test_replay.py`.

File names: `<path>[.<release>][.run<N>].json`. `<path>` is one of `PATHS`; the release tag is
absent for the first recording; `run<N>` numbers the runs of a continue-as-new chain. Every run
of a path was started with the workflow id `workflow_id(path)`.
"""

from __future__ import annotations

from pathlib import Path

HISTORY_DIR = Path(__file__).parent

PATHS = (
    "completed",
    "cancelled-mid-render",
    "completion-wins",
    "drained",
    "failed-bad-input",
    "failed-render",
    "continue-as-new",
    "cancelled-during-prepare",
    "cancel-pushed-again",
    "refused-request",
    "cancelled-before-start",
    "job-dir-deleted",
    "input-changed",
)
"""The paths through `VariationJob` that must keep replaying."""


def workflow_id(path: str) -> str:
    """The workflow id a path's history was recorded under."""
    return f"replay-{path}"


def path_of(history: Path) -> str:
    """The path a history file belongs to (`completed.r2.run1.json` -> `completed`)."""
    return history.name.split(".", 1)[0]


def history_files() -> list[Path]:
    """Every recorded history, sorted by name."""
    return sorted(HISTORY_DIR.glob("*.json"))
