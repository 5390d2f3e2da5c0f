"""Cancel jobs at random moments and check every invariant after each one.

CI profile: 50 runs (about a minute). Long profile: `VARIA_FUZZ_RUNS=500`. Every run draws from
`random.Random(seed + run)`; replay a failure with `VARIA_FUZZ_SEED=<seed printed>`.
Moments: before any worker picked the job up, during probe, during a render (FFmpeg running),
during the final check-and-rename, during cleanup, after completion, or after a random delay.
The cancel reaches renders by the push path (`varia.stops`); for a third of the jobs every push
is lost, so the heartbeat path has to deliver it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from tests.helpers import assert_manifest_matches_disk, start_job
from tests.reliability.conftest import TinyClips
from tests.reliability.support import history_facts, job_processes, leftovers, snapshot
from varia import activities, cleanup, media, render_output, stops
from varia.config import Settings
from varia.models import JobResult
from varia.names import MANIFEST_NAME
from varia.worker import build_worker

RUNS = int(os.environ.get("VARIA_FUZZ_RUNS", "50"))
SEED = int(os.environ.get("VARIA_FUZZ_SEED", str(random.SystemRandom().randrange(10**6))))
PARALLEL = 3
PHASES = ("queued", "probe", "render", "rename", "cleanup", "completed", "random")
HOOKED = ("probe", "render", "rename", "cleanup")
CLOSED = {WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.COMPLETED}


@dataclass
class Tally:
    """The figures of the whole fuzz session."""

    runs: int = 0
    cancels: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    orphans: int = 0
    partials: int = 0
    undecodable: int = 0
    kept_outputs: int = 0
    pushes_delivered: int = 0
    pushes_lost: int = 0


class CancelHooks:
    """Cancel a job from inside one of its activities, at an exact moment of its work."""

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client, self.loop = client, loop
        self.armed: dict[str, str] = {}  # job id -> phase
        self.fired: set[str] = set()
        self.lose_pushes: set[str] = set()  # job ids whose pushed cancels are dropped
        self.pushed: Counter[str] = Counter()  # job id -> renders a push stopped
        self.lost: Counter[str] = Counter()

    def _take(self, phase: str) -> str | None:
        if not activity.in_activity():
            return None
        job_id = activity.info().workflow_id or ""
        if self.armed.get(job_id) != phase or job_id in self.fired:
            return None
        self.fired.add(job_id)
        return job_id

    def cancel_from_thread(self, phase: str) -> None:
        """Called in an activity's worker thread: request the cancel and wait until accepted."""
        job_id = self._take(phase)
        if job_id is not None:
            handle = self.client.get_workflow_handle(job_id)
            asyncio.run_coroutine_threadsafe(handle.cancel(), self.loop).result(30)

    def cancel_from_loop(self, phase: str) -> None:
        """Called on the event loop (a render's tick): request the cancel without blocking."""
        job_id = self._take(phase)
        if job_id is not None:
            self.loop.create_task(self.client.get_workflow_handle(job_id).cancel())


@pytest_asyncio.fixture
async def hooks(client: Client, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CancelHooks]:
    """Wrap probe, the FFmpeg run, check-and-rename and cleanup with cancel points."""
    hooks = CancelHooks(client, asyncio.get_running_loop())
    probe, check_and_rename, clean_up_job = (
        media.probe,
        render_output._check_and_rename,
        cleanup.clean_up_job,
    )
    run_ffmpeg = getattr(activities, "run_ffmpeg")  # noqa: B009 (not re-exported)

    def hooked(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            hooks.cancel_from_thread(phase)
            return fn(*args, **kwargs)

        return wrapper

    async def hooked_run(*args: Any, on_tick: Callable[..., None], **kwargs: Any) -> Any:
        def tick(*tick_args: Any) -> None:
            on_tick(*tick_args)
            hooks.cancel_from_loop("render")

        return await run_ffmpeg(*args, on_tick=tick, **kwargs)

    stop = stops.RenderRegistry.stop

    def lossy_stop(
        registry: stops.RenderRegistry, workflow_id: str, run_id: str, ids: list[str]
    ) -> list[str]:
        if workflow_id in hooks.lose_pushes:
            hooks.lost[workflow_id] += len(ids)
            return []
        found = stop(registry, workflow_id, run_id, ids)
        hooks.pushed[workflow_id] += len(found)
        return found

    monkeypatch.setattr(stops.RenderRegistry, "stop", lossy_stop)
    monkeypatch.setattr(media, "probe", hooked("probe", probe))
    monkeypatch.setattr(render_output, "_check_and_rename", hooked("rename", check_and_rename))
    monkeypatch.setattr(cleanup, "clean_up_job", hooked("cleanup", clean_up_job))
    monkeypatch.setattr(activities, "run_ffmpeg", hooked_run)
    yield hooks


async def _cancel(handle: WorkflowHandle[Any, JobResult]) -> bool:
    """Request a cancel; False if the job had already closed (which is fine)."""
    try:
        await handle.cancel()
    except RPCError:
        return False
    return True


async def _close(handle: WorkflowHandle[Any, JobResult]) -> WorkflowExecutionStatus:
    async with asyncio.timeout(120):
        with contextlib.suppress(Exception):
            await handle.result()
    status = (await handle.describe()).status
    assert status is not None
    return status


def _request(rng: random.Random, clips: TinyClips, out_dir: Path) -> dict[str, Any]:
    inputs = [str(rng.choice([clips.tiny, clips.small]))]
    return {
        "inputs": inputs,
        "variations": rng.randint(1, 3),
        "concurrency": rng.randint(1, 2),
        "output_dir": str(out_dir),
        "seed": rng.randrange(1000),
        "threads": 1,
    }


async def _check(
    handle: WorkflowHandle[Any, JobResult], job_dir: Path, phase: str, tally: Tally
) -> None:
    """Every invariant of a cancelled (or completed) job."""
    status = await _close(handle)
    label = f"{phase} run of {handle.id}"
    assert status in CLOSED, f"{label}: closed {status}"
    tally.outcomes[status.name] += 1
    orphans = job_processes(handle.id)
    tally.orphans += len(orphans)
    assert orphans == [], f"{label}: FFmpeg left running: {orphans}"
    partial = leftovers(job_dir)
    tally.partials += len(partial)
    assert partial == [], f"{label}: partial files left: {partial}"
    facts = await history_facts(handle)
    assert facts["renders_after_cancel"] == [], (
        f"{label}: renders started after the cancel: {facts['kinds']}"
    )
    if phase == "queued":
        assert status == WorkflowExecutionStatus.CANCELED, label
    if job_dir.exists():
        assert (job_dir / MANIFEST_NAME).exists(), f"{label}: {status} no manifest {facts['kinds']}"
        manifest = assert_manifest_matches_disk(job_dir)  # every listed output decodes
        tally.kept_outputs += len(manifest["outputs"])
        assert len(manifest["outputs"]) == facts["renders_completed"], (
            f"{label}: a render that completed was not kept: {facts['kinds']}"
        )
        expected = "cancelled" if status == WorkflowExecutionStatus.CANCELED else "completed"
        assert manifest["state"] == expected, f"{label}: manifest says {manifest['state']}"
    else:
        assert status == WorkflowExecutionStatus.CANCELED, f"{label}: completed without a dir"
    before = (snapshot(job_dir), facts["events"])
    tally.cancels += await _cancel(handle)  # cancelling again changes nothing
    assert (await handle.describe()).status == status
    assert (snapshot(job_dir), (await history_facts(handle))["events"]) == before, label
    assert not (job_dir / MANIFEST_NAME).exists() or job_dir.is_dir()


async def _run_one(
    index: int,
    client: Client,
    task_queue: str,
    hooks: CancelHooks,
    clips: TinyClips,
    out_dir: Path,
    tally: Tally,
) -> None:
    rng = random.Random(SEED * 100_003 + index)
    phase = rng.choice([p for p in PHASES if p != "queued"])
    job_id = f"fuzz-{index}-{phase}-{uuid.uuid4().hex[:6]}"
    if phase in HOOKED:
        hooks.armed[job_id] = phase
    if rng.random() < 1 / 3:
        hooks.lose_pushes.add(job_id)
    handle = await start_job(client, task_queue, job_id, _request(rng, clips, out_dir))
    if phase == "random":
        await asyncio.sleep(rng.uniform(0.0, 1.5))  # the random moment itself, not a sync
        tally.cancels += await _cancel(handle)
    elif phase == "completed":
        await _close(handle)
        tally.cancels += await _cancel(handle)
    if rng.random() < 0.5:  # a second cancel right behind the first
        tally.cancels += await _cancel(handle)
    await _check(handle, out_dir / job_id, phase, tally)
    if phase in HOOKED:
        tally.cancels += job_id in hooks.fired
    assert job_id not in hooks.lose_pushes or hooks.pushed[job_id] == 0, job_id
    tally.pushes_delivered += hooks.pushed[job_id]
    tally.pushes_lost += hooks.lost[job_id]
    tally.phases[phase] += 1
    tally.runs += 1


async def test_cancel_at_any_moment(
    client: Client,
    settings: Settings,
    task_queue: str,
    hooks: CancelHooks,
    tiny_clips: TinyClips,
    tmp_path: Path,
) -> None:
    print(f"\nFUZZ seed={SEED} runs={RUNS} (replay: VARIA_FUZZ_SEED={SEED})")
    tally = Tally()
    out_dir = tmp_path / "out"
    queued = [i for i in range(RUNS) if random.Random(SEED * 7 + i).random() < 0.1]
    limit = asyncio.Semaphore(PARALLEL)

    async def one(index: int) -> None:
        async with limit:
            await _run_one(index, client, task_queue, hooks, tiny_clips, out_dir, tally)

    async with build_worker(client, settings):
        await asyncio.gather(*(one(i) for i in range(RUNS) if i not in queued))
    # before any worker picked it up: cancelled on a queue nobody polls yet
    idle_queue = f"{task_queue}-idle"
    handles = []
    for index in queued:
        rng = random.Random(SEED * 100_003 + index)
        job_id = f"fuzz-{index}-queued-{uuid.uuid4().hex[:6]}"
        handle = await start_job(client, idle_queue, job_id, _request(rng, tiny_clips, out_dir))
        tally.cancels += await _cancel(handle)
        handles.append(handle)
    async with build_worker(client, settings.model_copy(update={"task_queue": idle_queue})):
        for handle in handles:
            await _check(handle, out_dir / handle.id, "queued", tally)
            tally.phases["queued"] += 1
            tally.runs += 1
    print(
        f"FUZZ seed={SEED} runs={tally.runs} cancels={tally.cancels} "
        f"outcomes={dict(tally.outcomes)} phases={dict(tally.phases)} orphans={tally.orphans} "
        f"partials={tally.partials} undecodable={tally.undecodable} kept={tally.kept_outputs} "
        f"pushes delivered={tally.pushes_delivered} lost={tally.pushes_lost}"
    )
    assert tally.runs == RUNS
    assert (tally.orphans, tally.partials, tally.undecodable) == (0, 0, 0)
