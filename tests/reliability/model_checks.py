"""The model of one job execution and the invariants it must meet once it closed.

What the model predicts from the request and the operations sent to it:
- an execution under a used workflow id whose job directory exists fails at once with a
  non-retryable `BadRequest` naming the directory, schedules no render and writes nothing;
- one with a bad input fails (`JobFailed` naming that input) with no output, or is cancelled;
- otherwise it completes with every variation, unless a cancel (then `cancelled`, or completed:
  completion wins) or a drain (then `drained` with fewer, or completed) was accepted;
- every render the history shows completed (over every run of the chain) is in the manifest
  exactly once, on disk, decodes, and is the render of its own input with its own recipe;
- the manifest matches the disk; once a drain or a cancel reached any run of the chain, no render
  is scheduled after it, in that run or a later one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from tests.helpers import assert_manifest_matches_disk, read_manifest
from tests.reliability.model_support import Clip, RunFacts, chain_facts, digest
from varia import errors, media
from varia.models import JobResult
from varia.names import MANIFEST_NAME
from varia.recipes import make_recipe, output_name, output_stems


@dataclass
class Closed:
    """How an execution ended, as its caller saw it."""

    status: str  # COMPLETED, FAILED or CANCELED
    result: JobResult | None = None
    failure_type: str | None = None
    failure_message: str = ""


@dataclass
class Execution:
    """One workflow execution (chain) the test started, and what was done to it."""

    label: str
    job_id: str
    output_dir: Path
    inputs: list[str]
    clips: list[Clip | None]  # None: a bad input
    variations: int
    seed: int
    chunk_size: int | None
    handle: WorkflowHandle[Any, JobResult]
    first_run_id: str
    dir_existed: bool  # its job dir was there when it started (an earlier execution's)
    closer: asyncio.Task[Closed]
    drain_sent: bool = False
    stop_sent: bool = False  # a cancel or a drain was sent while it was open
    closed: Closed | None = None
    snapshot: dict[str, tuple[object, ...]] | None = None
    outputs: int = 0
    drain_in_first_task: bool = False  # (of a continued run: where a carry could overwrite it)
    notes: list[str] = field(default_factory=list)

    @property
    def job_dir(self) -> Path:
        """`<output_dir>/<job id>`."""
        return self.output_dir / self.job_id

    @property
    def bad(self) -> bool:
        """Whether the request names a bad input."""
        return any(clip is None for clip in self.clips)

    @property
    def total(self) -> int:
        """Variations the request asks for."""
        return len(self.inputs) * self.variations


async def await_close(handle: WorkflowHandle[Any, JobResult]) -> Closed:
    """Wait for the chain to close (the handle follows continue-as-new) and say how."""
    try:
        return Closed("COMPLETED", result=await handle.result())
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, CancelledError):
            return Closed("CANCELED")
        if isinstance(cause, ApplicationError):
            return Closed("FAILED", failure_type=cause.type, failure_message=cause.message)
        return Closed("FAILED", failure_message=str(cause))


async def check_closed(client: Client, ex: Execution) -> None:
    """Every invariant of a closed execution; records its directory's snapshot."""
    closed = ex.closed
    assert closed is not None
    runs = await chain_facts(client, ex.job_id, ex.first_run_id)
    _check_history(ex, runs)
    cancelled = any(run.cancel_requested for run in runs)  # (the API accepts late ones too)
    if ex.dir_existed:
        assert (closed.status, closed.failure_type) == ("FAILED", errors.BAD_REQUEST), closed
        assert str(ex.job_dir) in closed.failure_message, closed.failure_message
        assert sum(run.renders_scheduled for run in runs) == 0, "refused, yet it rendered"
        return  # its directory is an earlier execution's: the world check proves it unchanged
    if ex.bad:
        assert closed.status == "FAILED" or (closed.status == "CANCELED" and cancelled)
        if closed.status == "FAILED":
            assert closed.failure_type == errors.BAD_INPUT, closed
            named = [path for path, c in zip(ex.inputs, ex.clips, strict=True) if c is None]
            assert any(path in closed.failure_message for path in named), closed.failure_message
        assert sum(run.renders_scheduled for run in runs) == 0, "a bad request rendered"
    else:
        allowed = {"COMPLETED", "CANCELED"} if cancelled else {"COMPLETED"}
        assert closed.status in allowed, f"{closed} (cancel requested: {cancelled})"
    if not ex.job_dir.exists():
        assert closed.status in ("CANCELED", "FAILED"), f"{closed.status} without a job dir"
        assert sum(run.renders_scheduled for run in runs) == 0
        return
    _check_manifest(ex, runs)
    ex.snapshot = digest(ex.job_dir)


def _check_history(ex: Execution, runs: list[RunFacts]) -> None:
    stopped = False  # a drain or a cancel reached the chain: no render may start after it
    for run in runs:
        assert not (stopped and run.renders_scheduled), f"renders after a drain/cancel: {run}"
        assert run.renders_after_stop == [], f"renders after a drain/cancel: {run}"
        stopped = stopped or run.drain_accepted or run.cancel_requested
    if ex.drain_sent:
        assert any(run.drain_accepted for run in runs), "drain answered, not in the history"
    ex.drain_in_first_task = any(run.drain_in_first_task for run in runs[1:])
    done = [(i, v) for run in runs for i, v, _ in run.renders_done]
    assert len(done) == len(set(done)), f"a variation completed twice: {sorted(done)}"


def _check_manifest(ex: Execution, runs: list[RunFacts]) -> None:
    closed = ex.closed
    assert closed is not None
    assert (ex.job_dir / MANIFEST_NAME).exists(), f"{closed.status} job without a manifest"
    manifest = assert_manifest_matches_disk(ex.job_dir)
    state = manifest["state"]
    expected_states = {
        "CANCELED": {"cancelled"},
        "FAILED": {"failed"},
        "COMPLETED": {"completed", "drained"} if ex.drain_sent else {"completed"},
    }[closed.status]
    assert state in expected_states, f"manifest state {state} for {closed.status}"
    assert (manifest["job_id"], manifest["seed"]) == (ex.job_id, ex.seed)
    assert manifest["total"] == ex.total and manifest["foreign"] == []
    outputs = manifest["outputs"]
    keys = [(entry["input_index"], entry["variation"]) for entry in outputs]
    paths = [entry["path"] for entry in outputs]
    assert len(set(keys)) == len(keys), f"a variation listed twice: {sorted(keys)}"
    assert len({p.casefold() for p in paths}) == len(paths), f"names clash: {sorted(paths)}"
    done = {(i, v, path) for run in runs for i, v, path in run.renders_done}
    listed = {(i, v, path) for (i, v), path in zip(keys, paths, strict=True)}
    assert listed == done, f"completed renders {sorted(done)} != manifest {sorted(listed)}"
    if state == "completed":
        assert len(outputs) == ex.total, f"completed with {len(outputs)} of {ex.total}"
    if state == "drained":
        assert len(outputs) < ex.total, "drained, yet every variation is there"
    if ex.bad or state == "failed":
        assert outputs == [], "a failed request kept outputs"
    if closed.result is not None:
        result = closed.result
        assert (result.state, result.completed) == (state, len(outputs))
        assert Path(result.job_dir) == ex.job_dir
    stems = output_stems(ex.inputs)
    for entry in outputs:
        _check_own_render(ex, entry, stems)
    ex.outputs = len(outputs)
    assert read_manifest(ex.job_dir) == manifest


def _check_own_render(ex: Execution, entry: dict[str, Any], stems: list[str]) -> None:
    """The output is the render of the input and recipe the manifest names for it."""
    index, variation = entry["input_index"], entry["variation"]
    assert 0 <= index < len(ex.inputs) and 0 <= variation < ex.variations, entry
    clip = ex.clips[index]
    assert clip is not None, f"an output of a bad input: {entry}"
    assert entry["input"] == ex.inputs[index], entry
    assert entry["path"] == output_name(stems[index], variation, ex.variations), entry
    recipe = make_recipe(ex.seed, index, variation)
    assert entry["recipe"] == recipe.model_dump(), entry
    path = ex.job_dir / entry["path"]
    expected = clip.info.duration_s / recipe.speed
    tolerance = max(0.1, 3.0 / clip.info.fps)
    media.check_output(str(path), expected, tolerance)  # raises naming the file if not
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        size = (video.codec_context.width, video.codec_context.height)
        frames = sum(1 for _ in container.decode(video=0))
    assert size == (clip.width, clip.height), f"{entry['path']} is {size}, its input {clip}"
    assert frames > 0, f"{entry['path']} decodes no frame"
