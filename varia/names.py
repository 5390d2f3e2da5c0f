"""Every name of varia's contract, once, with its build and parse helpers side by side.

Registered names (workflow types, activity names, query/update/signal names, search
attributes, activity ids) are in recorded histories and in other programs: they never change
(`tests/test_replay.py` replays the histories). File names are in every job directory.
Everything else derives from here; this module imports nothing of varia (the CLI reads it).
"""

from __future__ import annotations

import re

# ---- workflow types ----------------------------------------------------------------------

WORKFLOW_TYPE = "VariationJob"
"""The job workflow, startable by name (`temporal workflow start --type VariationJob`)."""
JANITOR_WORKFLOW = "VariaJanitor"
"""The scheduled sweep that closes what a job left behind."""

# ---- activity names ----------------------------------------------------------------------

PREPARE = "varia.prepare"
RENDER = "varia.render"
STOP_RENDERS = "varia.stop_renders"
RENDER_STOP_QUEUES = "varia.render_stop_queues"
RECORD = "varia.record"
DISCARD = "varia.discard"
SEARCH_ATTRIBUTES = "varia.search_attributes"
FINISH = "varia.finish"
"""Cleanup and manifest (registered as `finish`; the code calls the step *cleanup*)."""
JANITOR = "varia.janitor"

# ---- workflow patches (their ids are in recorded histories) ----------------------------

DEFAULT_SEED_PATCH = "default-seed"
UPSERT_PACE_PATCH = "upsert-pace"
LOCAL_EDGES_PATCH = "local-edges"
REFUSE_ALIKE_PATCH = "refuse-alike"
UMBRELLA_PATCHES = (REFUSE_ALIKE_PATCH, LOCAL_EDGES_PATCH, UPSERT_PACE_PATCH)
"""Patches that stand for every patch before them, newest first: a run that recorded one took
every earlier patch's path without recording its marker (`VariationJob._patched`)."""

# ---- query, update and signal names ------------------------------------------------------

PROGRESS_QUERY = "progress"
PAUSE_UPDATE = "pause"
RESUME_UPDATE = "resume"
DRAIN_UPDATE = "drain"
RENDER_PROGRESS_SIGNAL = "render_progress"

# ---- search attributes -------------------------------------------------------------------

STATE_ATTRIBUTE = "VariaState"
COMPLETED_ATTRIBUTE = "VariaCompleted"
TOTAL_ATTRIBUTE = "VariaTotal"
PERCENT_ATTRIBUTE = "VariaPercent"
SEARCH_ATTRIBUTE_TYPES = {
    STATE_ATTRIBUTE: "Keyword",
    COMPLETED_ATTRIBUTE: "Int",
    TOTAL_ATTRIBUTE: "Int",
    PERCENT_ATTRIBUTE: "Double",
}
"""Each search attribute's type, as `temporal operator search-attribute create` names it."""

# ---- activity ids ------------------------------------------------------------------------

_RENDER_ID = re.compile(r"^render-(\d+)-(\d+)$")


def render_activity_id(input_index: int, variation: int) -> str:
    """The activity id of one variation's render: `render-<input>-<variation>`."""
    return f"render-{input_index}-{variation}"


def parse_render_activity_id(activity_id: str) -> tuple[int, int] | None:
    """(input index, variation) of a render activity id; None for any other id."""
    match = _RENDER_ID.match(activity_id)
    return (int(match.group(1)), int(match.group(2))) if match else None


# ---- file names in a job directory -------------------------------------------------------

MANIFEST_NAME = "manifest.json"
MARKER_NAME = ".varia-job"
"""The job directory's owner record (job id and execution chain)."""
LEDGER_NAME = ".varia-ledger.jsonl"
"""Completion records of finished runs (continue-as-new)."""
OWN_PREFIX = ".varia"
"""Every file of varia's own (marker, ledger, scratch) begins with it; none is an output."""
ATOMIC_PREFIX = ".varia-tmp-"
CELL_PREFIX = ".varia-cell-"
RECORD_PREFIX = ".varia-record-"
SLOT_PREFIX = ".varia-slot-"
_PART_SUFFIX = ".part"


def temp_name(output_name: str) -> str:
    """The name FFmpeg writes an output under until it is checked: `.<output>.part`."""
    return f".{output_name}{_PART_SUFFIX}"


def parse_temp_name(name: str) -> str | None:
    """The output name a temporary render name belongs to; None if `name` is not one."""
    if name.startswith(".") and name.endswith(_PART_SUFFIX) and len(name) > len(_PART_SUFFIX):
        return name[1 : -len(_PART_SUFFIX)]
    return None


def record_name(output_name: str) -> str:
    """The name of an output's provenance record, written by its render and merged into the
    manifest by cleanup: `.varia-record-<output>.json`."""
    return f"{RECORD_PREFIX}{output_name}.json"


def slot_lock_name(slot: int) -> str:
    """The lock file of a job's render slot `slot` (`varia.job_slots`): `.varia-slot-<k>.lock`."""
    return f"{SLOT_PREFIX}{slot}.lock"


def slot_turn_name(slot: int) -> str:
    """The file that says whose turn in slot `slot` is done: `.varia-slot-<k>.turn`."""
    return f"{SLOT_PREFIX}{slot}.turn"


def atomic_temp_name(name: str) -> str:
    """The scratch name an atomic write of `name` goes through (`.varia-tmp-<name>`)."""
    return ATOMIC_PREFIX + name.lstrip(".")
