"""The world of the model-based test: inputs whose renders identify them, snapshots of what must
never change, and what a job's history says (followed over every run of its chain)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client

from tests.bad_inputs import hls_playlist
from varia import media, names
from varia.clips import make_clip
from varia.models import MediaInfo

CLIPS = (  # same basename in several folders, a name like a disambiguated stem, case only
    ("a/x.mp4", "160x120", 0.8, True),
    ("b/x.mp4", "176x144", 1.2, False),
    ("c/x-1.mp4", "192x128", 1.6, True),
    ("d/X.mp4", "208x160", 2.0, False),
    ("e/x~0.mp4", "224x176", 2.4, True),
)
"""(path under the inputs root, frame size, seconds, audio). Every input has its own frame size,
and its duration stays apart from the others' under any speed knob (0.95-1.05): an output's
size and length say which input it was rendered from."""

BAD_KINDS = ("missing", "text", "playlist")


@dataclass(frozen=True)
class Clip:
    """A good input as probed."""

    path: str
    width: int
    height: int
    info: MediaInfo


@dataclass(frozen=True)
class Inputs:
    """The inputs root: good clips, bad inputs by kind, and a sentinel dir outside the roots."""

    root: Path
    sentinel: Path
    clips: tuple[Clip, ...]
    bad: dict[str, str]


def make_inputs(base: Path) -> Inputs:
    """Generate the clips, the bad inputs and the sentinel dir (a playlist's segment lives there;
    its atime is set before its mtime, so any read of it shows)."""
    root, sentinel = base / "inputs", base / "sentinel"
    clips = []
    for relative, size, seconds, audio in CLIPS:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        make_clip(path, seconds=seconds, size=size, audio=audio)
        width, height = (int(n) for n in size.split("x"))
        clips.append(Clip(str(path), width, height, media.probe(str(path))))
    bad_dir = root / "bad"
    bad_dir.mkdir()
    (bad_dir / "notes.mp4").write_text("this is a text file, not a video\n")
    segment = hls_playlist(bad_dir / "list.m3u8", sentinel, seconds=2.0)
    (sentinel / "x~0_v000.mp4").write_bytes(Path(clips[0].path).read_bytes())
    for path in sentinel.iterdir():
        os.utime(path, ns=(1_000_000_000, 2_000_000_000))  # atime < mtime: a read moves it
    assert segment.exists()
    bad = {
        "missing": str(bad_dir / "missing.mp4"),
        "text": str(bad_dir / "notes.mp4"),
        "playlist": str(bad_dir / "list.m3u8"),
    }
    return Inputs(root, sentinel, tuple(clips), bad)


def _sha256(path: Path) -> str:
    """Hash a file without changing its atime (O_NOATIME: the test never reads as a worker)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def digest(root: Path, *, atime: bool = False) -> dict[str, tuple[object, ...]]:
    """Every entry under `root`: relative path → (kind, mtime ns, sha256[, atime ns])."""
    found: dict[str, tuple[object, ...]] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        relative = str(path.relative_to(root))
        if path.is_symlink():
            found[relative] = ("link", os.readlink(path))
        elif path.is_dir():
            found[relative] = ("dir",)
        else:
            entry: tuple[object, ...] = ("file", stat.st_mtime_ns, _sha256(path))
            found[relative] = (*entry, stat.st_atime_ns) if atime else entry
    return found


@dataclass
class RunFacts:
    """One run of a chain, from its history."""

    run_id: str
    renders_done: list[tuple[int, int, str]] = field(default_factory=list)
    renders_scheduled: int = 0
    drain_accepted: bool = False
    drain_in_first_task: bool = False  # accepted in the run's first workflow task
    cancel_requested: bool = False
    renders_after_stop: list[str] = field(default_factory=list)
    failure_types: list[str] = field(default_factory=list)


async def chain_facts(client: Client, job_id: str, first_run_id: str) -> list[RunFacts]:
    """Every run of the execution chain that began with `first_run_id`, in order."""
    runs: list[RunFacts] = []
    run_id: str | None = first_run_id
    while run_id:
        run, run_id = RunFacts(run_id), None
        scheduled: dict[int, str] = {}
        tasks_done = 0
        handle = client.get_workflow_handle(job_id, run_id=run.run_id)
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attrs.activity_type.name
                if attrs.activity_type.name == names.RENDER:
                    run.renders_scheduled += 1
                    if run.drain_accepted or run.cancel_requested:
                        run.renders_after_stop.append(attrs.activity_id)
            elif event.HasField("activity_task_completed_event_attributes"):
                done = event.activity_task_completed_event_attributes
                if scheduled.get(done.scheduled_event_id) == names.RENDER:
                    result = json.loads(done.result.payloads[0].data)
                    run.renders_done.append(
                        (result["input_index"], result["variation"], result["path"])
                    )
            elif event.HasField("workflow_task_completed_event_attributes"):
                tasks_done += 1
            elif event.HasField("workflow_execution_update_accepted_event_attributes"):
                accepted = event.workflow_execution_update_accepted_event_attributes
                if accepted.accepted_request.input.name == "drain":
                    run.drain_in_first_task |= not run.drain_accepted and tasks_done == 1
                    run.drain_accepted = True
            elif event.HasField("workflow_execution_cancel_requested_event_attributes"):
                run.cancel_requested = True
            elif event.HasField("workflow_execution_failed_event_attributes"):
                failure = event.workflow_execution_failed_event_attributes.failure
                run.failure_types.append(failure.application_failure_info.type)
            elif event.HasField("workflow_execution_continued_as_new_event_attributes"):
                run_id = (
                    event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                )
        runs.append(run)
    return runs
