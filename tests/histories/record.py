"""Record real histories of `VariationJob` for the replay test (`tests/test_replay.py`).

Run it to ADD the histories of a new release, never to overwrite old ones: the old files are
what running jobs of the old release look like, and the new code must keep replaying them.

    .venv/bin/python -m tests.histories.record --release <tag>   # writes <path>.<tag>[.runN].json

(The first recording was made without `--release`.) It refuses to write over an existing file.
Each path runs on its own real dev server session (started here, stopped at the end) with the
real FFmpeg on tiny generated clips, or an FFmpeg stand-in where a path needs one; every path
checks that it took the path it names before its history is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
)

from tests.helpers import paced_ffmpeg, wait_for
from tests.histories import HISTORY_DIR, PATHS, history_files, path_of, workflow_id
from varia import media, names, stops
from varia.clips import make_clip
from varia.config import Settings
from varia.server import start_throwaway_server
from varia.worker import build_worker


@dataclass
class Lab:
    """What every path needs: a client of the dev server, a scratch dir and a tiny clip."""

    client: Client
    root: Path
    clip: Path  # 4 s, 160x120, with audio: about 4 s to render through `paced_ffmpeg`

    def settings(self, task_queue: str, **overrides: Any) -> Settings:
        """Worker settings on `task_queue` against the recording server."""
        values: dict[str, Any] = {
            "TEMPORAL_ADDRESS": self.client.service_client.config.target_host,
            "VARIA_TASK_QUEUE": task_queue,
            "VARIA_STOP_STAGE_TIMEOUT": 2.0,
        }
        return Settings(**(values | overrides))

    def request(self, variations: int, **extra: Any) -> dict[str, Any]:
        """The contract's JSON input for `variations` of the clip."""
        out = self.root / "out"
        out.mkdir(exist_ok=True)
        request = {"inputs": [str(self.clip)], "variations": variations, "output_dir": str(out)}
        return request | extra

    async def start(
        self, path: str, task_queue: str, request: dict[str, Any]
    ) -> WorkflowHandle[Any, Any]:
        """Start the path's job by name, as any caller would."""
        return await self.client.start_workflow(
            names.WORKFLOW_TYPE, request, id=workflow_id(path), task_queue=task_queue
        )


def _queue() -> str:
    return f"varia-record-{uuid.uuid4().hex[:8]}"


async def _closed(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus:
    """Wait until the job has closed (however it ended) and return its status."""
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    status = (await handle.describe()).status
    assert status is not None
    return status


async def _rendering(client: Client, job_id: str, at_least: int = 1) -> None:
    """Wait until `at_least` renders have started FFmpeg (they heartbeat its pid)."""

    async def started() -> bool:
        description = await client.get_workflow_handle(job_id).describe()
        running = [
            p
            for p in description.raw_description.pending_activities
            if p.activity_type.name == names.RENDER
            and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            and p.heartbeat_details.payloads
        ]
        return len(running) >= at_least

    await wait_for(started, timeout_s=60, what="a render to run FFmpeg")


async def _progress(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await handle.query(names.PROGRESS_QUERY, result_type=dict)
    return answer


def _event_types(history: WorkflowHistory) -> list[EventType.ValueType]:
    return [event.event_type for event in history.events]


async def _chain(client: Client, handle: WorkflowHandle[Any, Any]) -> list[WorkflowHistory]:
    """The history of every run of the job's chain, fetched by run id, first run first."""
    histories: list[WorkflowHistory] = []
    run_id = handle.first_execution_run_id or handle.result_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        run_id = None
        if last.HasField("workflow_execution_continued_as_new_event_attributes"):
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return histories


# ---- the paths ---------------------------------------------------------------------------


async def completed(lab: Lab) -> list[WorkflowHistory]:
    """Two variations at concurrency 2, both rendered."""
    queue = _queue()
    async with build_worker(lab.client, lab.settings(queue)):
        handle = await lab.start("completed", queue, lab.request(2, concurrency=2, seed=3))
        assert await _closed(handle) == WorkflowExecutionStatus.COMPLETED
    return await _chain(lab.client, handle)


async def cancelled_mid_render(lab: Lab) -> list[WorkflowHistory]:
    """Two variations one at a time: cancelled while the second renders, the first kept."""
    queue = _queue()
    settings = lab.settings(queue, VARIA_FFMPEG=str(paced_ffmpeg(lab.root)))
    async with build_worker(lab.client, settings):
        handle = await lab.start("cancelled-mid-render", queue, lab.request(2, threads=1))

        async def second_running() -> bool:
            progress = await _progress(handle)
            return bool(progress["completed"] == 1 and progress["running"] == 1)

        await wait_for(second_running, what="the first variation done, the second running")
        await _rendering(lab.client, handle.id)
        await handle.cancel()
        assert await _closed(handle) == WorkflowExecutionStatus.CANCELED
        assert (await _progress(handle))["completed"] == 1
    return await _chain(lab.client, handle)


def _finishes_despite_a_cancel(root: Path) -> Path:
    """An FFmpeg stand-in that ignores `q` and SIGTERM: the paced encode runs to its end."""
    script = root / "ffmpeg-finishes-anyway"
    script.write_text(
        "#!/bin/bash\n"
        "trap '' TERM INT\n"
        f'setsid {paced_ffmpeg(root)} -nostdin "$@" </dev/null &\n'
        "child=$!\n"
        "while kill -0 $child 2>/dev/null; do wait $child; status=$?; done\n"
        "exit $status\n"
    )
    script.chmod(0o755)
    return script


async def completion_wins(lab: Lab) -> list[WorkflowHistory]:
    """A cancel reaches the only render, which finishes anyway: the job completes."""
    queue = _queue()
    settings = lab.settings(  # (a cancel's own short stages too: it is pushed since push-cancel)
        queue,
        VARIA_FFMPEG=str(_finishes_despite_a_cancel(lab.root)),
        VARIA_STOP_STAGE_TIMEOUT=60,
        VARIA_CANCEL_STAGE_TIMEOUT=60,
    )
    async with build_worker(lab.client, settings):
        handle = await lab.start("completion-wins", queue, lab.request(1, threads=1))
        await _rendering(lab.client, handle.id)
        await handle.cancel()
        assert await _closed(handle) == WorkflowExecutionStatus.COMPLETED
    [history] = await _chain(lab.client, handle)
    types = _event_types(history)
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED in types
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in types
    return [history]


async def drained(lab: Lab) -> list[WorkflowHistory]:
    """Three variations one at a time, drained during the first: one kept, job `drained`."""
    queue = _queue()
    settings = lab.settings(queue, VARIA_FFMPEG=str(paced_ffmpeg(lab.root)))
    async with build_worker(lab.client, settings):
        handle = await lab.start("drained", queue, lab.request(3, threads=1))
        await _rendering(lab.client, handle.id)
        await handle.execute_update(names.DRAIN_UPDATE, result_type=dict)
        assert await _closed(handle) == WorkflowExecutionStatus.COMPLETED
        progress = await _progress(handle)
        assert (progress["state"], progress["completed"]) == ("drained", 1), progress
    return await _chain(lab.client, handle)


async def failed_bad_input(lab: Lab) -> list[WorkflowHistory]:
    """The second input does not exist: prepare fails `BadInput`, cleanup runs, job fails."""
    queue = _queue()
    request = lab.request(1)
    request["inputs"].append(str(lab.root / "missing.mp4"))
    async with build_worker(lab.client, lab.settings(queue)):
        handle = await lab.start("failed-bad-input", queue, request)
        assert await _closed(handle) == WorkflowExecutionStatus.FAILED
    manifest = Path(request["output_dir"]) / handle.id / names.MANIFEST_NAME
    assert manifest.is_file(), "cleanup did not run"
    return await _chain(lab.client, handle)


async def failed_render(lab: Lab) -> list[WorkflowHistory]:
    """FFmpeg exits 1 on every attempt: the render fails after its retries, the job fails."""
    queue = _queue()
    broken = lab.root / "ffmpeg-fails"
    broken.write_text("#!/bin/sh\necho 'Conversion failed!' >&2\nexit 1\n")
    broken.chmod(0o755)
    async with build_worker(lab.client, lab.settings(queue, VARIA_FFMPEG=str(broken))):
        handle = await lab.start("failed-render", queue, lab.request(1))
        assert await _closed(handle) == WorkflowExecutionStatus.FAILED
        assert (await _progress(handle))["failed"] == 1
    return await _chain(lab.client, handle)


async def continue_as_new(lab: Lab) -> list[WorkflowHistory]:
    """Three variations, one per run: a first, a middle and a last run."""
    queue = _queue()
    async with build_worker(lab.client, lab.settings(queue)):
        handle = await lab.start("continue-as-new", queue, lab.request(3, chunk_size=1))
        assert await _closed(handle) == WorkflowExecutionStatus.COMPLETED
    histories = await _chain(lab.client, handle)
    assert len(histories) == 3, f"{len(histories)} runs"
    return histories


async def cancelled_during_prepare(lab: Lab) -> list[WorkflowHistory]:
    """The cancel arrives while prepare runs: prepare still runs to its end, then cleanup.

    Prepare is a local activity (patch "local-edges"): the workflow sees the cancel in a task of
    its own only because a prepare longer than most of the workflow task timeout keeps its task
    alive by completing it and asking for a new one (the SDK's workflow task heartbeat). The
    probe waits at a gate until then; a 2 s task timeout keeps the wait short."""
    queue = _queue()
    gate, entered = threading.Event(), threading.Event()
    probe = media.probe

    def gated_probe(path: str, *args: Any) -> Any:
        entered.set()
        gate.wait(60)
        return probe(path, *args)

    media.probe = gated_probe  # type: ignore[assignment]
    try:
        async with build_worker(lab.client, lab.settings(queue)):
            handle = await lab.client.start_workflow(
                names.WORKFLOW_TYPE,
                lab.request(1),
                id=workflow_id("cancelled-during-prepare"),
                task_queue=queue,
                task_timeout=timedelta(seconds=2),
            )
            await wait_for(entered.is_set, what="prepare to probe")
            await handle.cancel()

            async def cancel_seen() -> bool:  # a workflow task completed after the request
                types = _event_types(await handle.fetch_history())
                requested = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
                return requested in types and (
                    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in types[types.index(requested) :]
                )

            await wait_for(cancel_seen, what="the workflow to see the cancel during prepare")
            gate.set()
            assert await _closed(handle) == WorkflowExecutionStatus.CANCELED
    finally:
        gate.set()
        media.probe = probe  # type: ignore[assignment]
    [history] = await _chain(lab.client, handle)
    types = _event_types(history)
    cancel_at = types.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
    assert EventType.EVENT_TYPE_MARKER_RECORDED in types[cancel_at:]  # prepare's, then cleanup's
    return [history]


async def cancel_pushed_again(lab: Lab) -> list[WorkflowHistory]:
    """One render, cancelled; the first push finds nothing (as when it arrives before the
    render runs on its worker), so the workflow pushes again, and that push stops it."""
    queue = _queue()
    settings = lab.settings(queue, VARIA_FFMPEG=str(paced_ffmpeg(lab.root)))
    stop, calls = stops.RenderRegistry.stop, []

    def first_finds_nothing(registry: stops.RenderRegistry, *args: Any) -> list[str]:
        calls.append(args)
        return [] if len(calls) == 1 else stop(registry, *args)

    stops.RenderRegistry.stop = first_finds_nothing  # type: ignore[method-assign]
    try:
        async with build_worker(lab.client, settings):
            handle = await lab.start("cancel-pushed-again", queue, lab.request(1, threads=1))
            await _rendering(lab.client, handle.id)
            await handle.cancel()
            assert await _closed(handle) == WorkflowExecutionStatus.CANCELED
    finally:
        stops.RenderRegistry.stop = stop  # type: ignore[method-assign]
    assert len(calls) == 2, f"{len(calls)} pushes reached the worker"
    return await _chain(lab.client, handle)


async def refused_request(lab: Lab) -> list[WorkflowHistory]:
    """`"variations": "2"`: refused before anything is made (strict types), the job fails."""
    queue = _queue()
    async with build_worker(lab.client, lab.settings(queue)):
        handle = await lab.start("refused-request", queue, lab.request(1) | {"variations": "2"})
        assert await _closed(handle) == WorkflowExecutionStatus.FAILED
    assert not (Path(lab.request(1)["output_dir"]) / handle.id).exists()
    return await _chain(lab.client, handle)


async def cancelled_before_start(lab: Lab) -> list[WorkflowHistory]:
    """Cancelled before any worker took the job: its directory is made (no probing) and
    cleanup writes the `cancelled` manifest."""
    queue = _queue()
    handle = await lab.start("cancelled-before-start", queue, lab.request(2))
    await handle.cancel()
    async with build_worker(lab.client, lab.settings(queue)):
        assert await _closed(handle) == WorkflowExecutionStatus.CANCELED
    manifest = Path(lab.request(2)["output_dir"]) / handle.id / names.MANIFEST_NAME
    assert manifest.is_file(), "no manifest"
    return await _chain(lab.client, handle)


async def job_dir_deleted(lab: Lab) -> list[WorkflowHistory]:
    """The job directory is deleted while the only render runs: the render fails, cleanup
    finds no directory (it makes nothing, writes no manifest), the job fails."""
    queue = _queue()
    settings = lab.settings(queue, VARIA_FFMPEG=str(paced_ffmpeg(lab.root)))
    async with build_worker(lab.client, settings):
        handle = await lab.start("job-dir-deleted", queue, lab.request(1, threads=1))
        await _rendering(lab.client, handle.id)
        job_dir = Path(lab.request(1)["output_dir"]) / handle.id
        shutil.rmtree(job_dir)
        assert await _closed(handle) == WorkflowExecutionStatus.FAILED
        assert (await _progress(handle))["failed"] == 1
    assert not job_dir.exists(), "the job directory was made again"
    return await _chain(lab.client, handle)


async def input_changed(lab: Lab) -> list[WorkflowHistory]:
    """The input is touched while its first of three variations runs (concurrency 1): the
    second, waiting for its turn, is refused (`BadInput`), the third is not started (patch
    "refuse-alike"), the first is kept, and the job fails."""
    queue = _queue()
    clip = lab.root / "clip-touched.mp4"
    shutil.copyfile(lab.clip, clip)
    request = lab.request(3, concurrency=1, threads=1) | {"inputs": [str(clip)]}
    settings = lab.settings(queue, VARIA_FFMPEG=str(paced_ffmpeg(lab.root)))
    async with build_worker(lab.client, settings):
        handle = await lab.start("input-changed", queue, request)
        await _rendering(lab.client, handle.id)
        stat = clip.stat()
        os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert await _closed(handle) == WorkflowExecutionStatus.FAILED
        progress = await _progress(handle)
        assert (progress["completed"], progress["failed"]) == (1, 2), progress
    return await _chain(lab.client, handle)


RECORDERS: dict[str, Callable[[Lab], Awaitable[list[WorkflowHistory]]]] = {
    "completed": completed,
    "cancelled-mid-render": cancelled_mid_render,
    "completion-wins": completion_wins,
    "drained": drained,
    "failed-bad-input": failed_bad_input,
    "failed-render": failed_render,
    "continue-as-new": continue_as_new,
    "cancelled-during-prepare": cancelled_during_prepare,
    "cancel-pushed-again": cancel_pushed_again,
    "refused-request": refused_request,
    "cancelled-before-start": cancelled_before_start,
    "job-dir-deleted": job_dir_deleted,
    "input-changed": input_changed,
}
assert tuple(RECORDERS) == PATHS


# ---- main --------------------------------------------------------------------------------


def _target(path: str, release: str | None, run: int | None) -> Path:
    parts = [path, *([release] if release else []), *([f"run{run}"] if run else [])]
    return HISTORY_DIR / (".".join(parts) + ".json")


def _release_of(history: Path) -> str | None:
    """The release tag in a history's file name (None for the first recording)."""
    tags = [p for p in history.name.split(".")[1:-1] if not re.fullmatch(r"run\d+", p)]
    return tags[0] if tags else None


async def record(release: str | None, only: list[str]) -> list[Path]:
    """Record the chosen paths; returns the files written."""
    taken = [f.name for f in history_files() if path_of(f) in only and _release_of(f) == release]
    if taken:
        raise SystemExit(f"refusing to overwrite recorded histories: {', '.join(taken)}")
    recorded: dict[Path, WorkflowHistory] = {}
    with tempfile.TemporaryDirectory(prefix="varia-record-") as scratch:
        root = Path(scratch)
        clip = make_clip(root / "clip.mp4", seconds=4, size="160x120")
        async with await start_throwaway_server() as env:
            lab = Lab(env.client, root, clip)
            for path in only:
                histories = await RECORDERS[path](lab)
                for number, history in enumerate(histories, start=1):
                    run = number if len(histories) > 1 else None
                    recorded[_target(path, release, run)] = history
    written = []
    for target, history in recorded.items():  # only once every path took its path
        target.write_text(history.to_json() + "\n")
        written.append(target)
        print(f"{target.name}: {len(history.events)} events", flush=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--release", help="tag of the release recorded (omit only the first time)")
    parser.add_argument("paths", nargs="*", metavar="PATH", help=f"default: all of {PATHS}")
    args = parser.parse_args()
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; known: {', '.join(PATHS)}")
    if args.release and not re.fullmatch(r"[A-Za-z0-9_-]+", args.release):
        parser.error(f"--release {args.release!r}: use letters, digits, '-' and '_' only")
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)  # the failing paths' noise
    for name in [k for k in os.environ if k.startswith("VARIA_")]:
        del os.environ[name]  # the paths set what they need; the developer's settings do not leak
    written = asyncio.run(record(args.release, list(args.paths) or list(PATHS)))
    print(f"wrote {len(written)} histories to {HISTORY_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
