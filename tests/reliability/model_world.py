"""The world of the model-based test and its operations: start (good or bad inputs, or under
a used workflow id), cancel, drain, drain right after a continue-as-new, kill the render
worker, restart the workflow worker, wait. `World.check` runs the invariants after each step.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from tests.helpers import processes_mentioning, start_job, wait_for
from tests.reliability.model_checks import Execution, await_close, check_closed
from tests.reliability.model_support import BAD_KINDS, Clip, Inputs, chain_facts, digest
from tests.reliability.model_workers import Workers
from varia import names
from varia.models import Progress

MAX_OPEN = 3
"""Jobs open at once; a start beyond waits for the oldest to close."""
MAX_RENDERS = 6
"""Variations one job asks for at most (inputs x variations), to keep runs lean."""
CLOSE_S = 240.0
"""Deadline for a job to close (a render retried after a kill waits its 10 s heartbeat)."""


@dataclass
class Tally:
    """The figures of a session."""

    runs: int = 0
    ops: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    executions: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    outputs_checked: int = 0
    kills_mid_render: int = 0
    drains_in_first_task: int = 0
    violations: list[str] = field(default_factory=list)


class World:
    """Workers, directories and the executions of the current run; one method per operation."""

    def __init__(self, client: Client, workers: Workers, inputs: Inputs, base: Path) -> None:
        self.client, self.workers, self.inputs, self.base = client, workers, inputs, base
        self.task_queue = workers.settings.task_queue
        self.token = uuid.uuid4().hex[:6]
        self.baseline_inputs = digest(inputs.root)
        self.baseline_sentinel = digest(inputs.sentinel, atime=True)
        self.tally = Tally()
        self.begin_run(-1, 0)

    # ---- runs --------------------------------------------------------------------------

    def begin_run(self, run: int, seed: int) -> None:
        """Fresh output dirs and an empty model for run `run`."""
        self.run, self.seed = run, seed
        self.run_root = self.base / f"run{run}"
        self.out_dirs = [self.run_root / "out1", self.run_root / "out2"]
        self.executions: list[Execution] = []
        self.log: list[str] = []

    def open(self) -> list[Execution]:
        """Executions not closed yet (in start order)."""
        return [ex for ex in self.executions if ex.closed is None]

    async def collect(self) -> None:
        """Check every execution that closed since the last step."""
        for ex in self.open():
            if ex.closer.done():
                ex.closed = ex.closer.result()
                await check_closed(self.client, ex)
                self.tally.outcomes[ex.closed.status] += 1
                self.tally.outputs_checked += ex.outputs
                self.tally.drains_in_first_task += ex.drain_in_first_task

    async def check(self) -> None:
        """The invariants of the world, after every step."""
        await self.collect()
        assert digest(self.inputs.root) == self.baseline_inputs, "an input changed"
        assert digest(self.inputs.sentinel, atime=True) == self.baseline_sentinel, (
            "a file outside the allowed roots was changed or read"
        )
        started = {(ex.output_dir, ex.job_id) for ex in self.executions}
        for out in self.out_dirs:
            for entry in out.iterdir() if out.exists() else []:
                assert (out, entry.name) in started, f"{entry} is no job's directory"
                assert entry.is_dir() and not entry.is_symlink(), f"{entry} is not a directory"
        for ex in self.executions:
            if ex.snapshot is not None:
                assert digest(ex.job_dir) == ex.snapshot, (
                    f"{ex.label}'s directory changed after it closed"
                )

    async def end_run(self) -> None:
        """Let every job close, check everything, and prove no FFmpeg is left."""
        for ex in self.open():
            async with asyncio.timeout(CLOSE_S):
                await asyncio.shield(ex.closer)
        await self.check()
        await wait_for(
            lambda: not processes_mentioning(str(self.run_root)),
            timeout_s=30,
            what="no process working in this run's directories",
        )

    async def abandon_run(self) -> None:
        """After a violation: wait a while for open jobs, then terminate what is left."""
        for ex in self.open():
            try:
                async with asyncio.timeout(CLOSE_S):
                    await asyncio.shield(ex.closer)
            except TimeoutError:
                with contextlib.suppress(RPCError):
                    await self.client.get_workflow_handle(ex.job_id).terminate("model test")
                ex.closer.cancel()
            with contextlib.suppress(BaseException):
                ex.closed = ex.closer.result()

    # ---- operations ----------------------------------------------------------------------

    async def do(self, kind: str, rng: random.Random) -> str:
        """Perform one operation; return a line for the replay log."""
        operation = getattr(self, f"op_{kind}")
        line: str = await operation(rng)
        return line

    async def op_start(self, rng: random.Random) -> str:
        return await self._start(rng, bad=False)

    async def op_start_bad(self, rng: random.Random) -> str:
        return await self._start(rng, bad=True)

    async def op_reuse(self, rng: random.Random) -> str:
        """Start again under the workflow id of a closed job (same or other output_dir)."""
        line = ""
        while True:  # a closed job whose id no open execution uses
            await self.collect()
            ids_open = {ex.job_id for ex in self.open()}
            closed = [ex for ex in self.executions if ex.closed and ex.job_id not in ids_open]
            if closed:
                break
            if not self.open():
                line += await self._start(rng, bad=False) + "; "
            await self._wait_oldest()
        earlier = rng.choice(closed)
        same = rng.random() < 0.7
        out = earlier.output_dir if same else self._other(earlier.output_dir)
        bad = rng.random() < 0.2
        return line + await self._start(rng, bad=bad, job_id=earlier.job_id, out=out)

    async def op_cancel(self, rng: random.Random) -> str:
        return await self._stop(rng, "cancel")

    async def op_drain(self, rng: random.Random) -> str:
        return await self._stop(rng, "drain")

    async def op_drain_boundary(self, rng: random.Random) -> str:
        """A job whose every run renders one variation, drained at its first continue-as-new:
        while the run records its chunk (the drain goes into the carry), or as soon as the
        next run exists (the drain may land in its first workflow task, before `run()`)."""
        line = await self._start(rng, bad=False, chunk=1, at_least=3)
        ex = self.executions[-1]
        handle = self.client.get_workflow_handle(ex.job_id)
        aim = rng.choice(["recording", "continued"])

        async def boundary() -> bool:
            if ex.closer.done():
                return True
            description = await handle.describe()
            if description.run_id != ex.first_run_id:
                return True
            pending = description.raw_description.pending_activities
            return aim == "recording" and any(
                activity.activity_type.name == names.RECORD for activity in pending
            )

        await wait_for(boundary, timeout_s=60, what=f"{ex.label} to continue as new", poll_s=0.0)
        accepted = await self._send_drain(ex)
        return f"{line}; drain when {aim}: {'accepted' if accepted else 'refused'}"

    async def op_kill(self, rng: random.Random) -> str:
        """SIGKILL the render worker mid-render (a job is started if none could render)."""
        line = ""
        if not any(not (ex.bad or ex.dir_existed or ex.stop_sent) for ex in self.open()):
            line = await self._start(rng, bad=False) + "; "
        with contextlib.suppress(AssertionError):
            await wait_for(
                lambda: processes_mentioning(str(self.run_root)), timeout_s=20, what="an FFmpeg"
            )
        running = await self.workers.kill_render(self.run_root)
        self.tally.kills_mid_render += running > 0
        return f"{line}render worker killed with {running} FFmpeg process(es) running"

    async def op_restart(self, rng: random.Random) -> str:
        """Shut the workflow worker down and start a new one (it replays the histories)."""
        await self.workers.restart_light()
        return "workflow worker restarted"

    async def op_wait(self, rng: random.Random) -> str:
        label = await self._wait_oldest()
        return f"waited for {label or 'nothing'} to close"

    # ---- helpers -------------------------------------------------------------------------

    async def _start(
        self,
        rng: random.Random,
        *,
        bad: bool,
        job_id: str | None = None,
        out: Path | None = None,
        chunk: int | None = None,
        at_least: int = 1,
    ) -> str:
        while len(self.open()) >= MAX_OPEN:
            await self._wait_oldest()
        clips: list[Clip | None] = [rng.choice(self.inputs.clips) for _ in range(rng.randint(1, 3))]
        most = min(3, MAX_RENDERS // len(clips))
        variations = max(rng.randint(1, most), -(-at_least // len(clips)))
        inputs = [clip.path for clip in clips if clip is not None]
        if bad:
            kind = rng.choice(BAD_KINDS)
            where = rng.randint(0, len(clips))
            clips.insert(where, None)
            inputs.insert(where, self.inputs.bad[kind])
        if chunk is None:
            chunk = rng.choice([None, None, 1, 2])
        label = f"e{len(self.executions)}"
        job_id = job_id or f"model-{self.token}-{self.run}-{label}"
        out = out or rng.choice(self.out_dirs)
        request: dict[str, Any] = {
            "inputs": inputs,
            "variations": variations,
            "output_dir": str(out),
            "seed": rng.randrange(1000),
            "concurrency": rng.randint(1, 2),
            "threads": 1,
        }
        if chunk is not None:
            request["chunk_size"] = chunk
        dir_existed = (out / job_id).exists()
        handle = await start_job(self.client, self.task_queue, job_id, request)
        assert handle.first_execution_run_id is not None
        ex = Execution(
            label=label,
            job_id=job_id,
            output_dir=out,
            inputs=inputs,
            clips=clips,
            variations=variations,
            seed=request["seed"],
            chunk_size=chunk,
            handle=handle,
            first_run_id=handle.first_execution_run_id,
            dir_existed=dir_existed,
            closer=asyncio.ensure_future(await_close(handle)),
        )
        self.executions.append(ex)
        self.tally.executions += 1
        short = [str(Path(p).relative_to(self.inputs.root)) for p in inputs]
        return (
            f"{label} id={job_id} out={out.name} inputs={short} variations={variations} "
            f"concurrency={request['concurrency']} seed={request['seed']} chunk={chunk}"
            + (" (job dir exists: expect refusal)" if dir_existed else "")
        )

    async def _stop(self, rng: random.Random, what: str) -> str:
        """Cancel or drain an open job (maybe once a render runs), else a closed one (late)."""
        candidates = self.open()
        if not candidates:  # every job closed: a late one must change nothing
            latest = {ex.job_id: ex for ex in self.executions}  # the last under each id
            if not latest:
                return "nothing to stop"
            ex = rng.choice(list(latest.values()))
        else:
            ex = rng.choice(candidates)
            if rng.random() < 0.6:
                await self._until_rendering(ex)
            ex.stop_sent = True
        if what == "drain":
            accepted = await self._send_drain(ex)
        else:
            accepted = await self._send_cancel(ex)
        return f"{what} {ex.label}: {'sent' if accepted else 'late (job closed)'}"

    async def _until_rendering(self, ex: Execution) -> None:
        handle = self.client.get_workflow_handle(ex.job_id)

        async def rendering() -> bool:
            if ex.closer.done():
                return True
            with contextlib.suppress(RPCError):
                progress = await handle.query(names.PROGRESS_QUERY, result_type=Progress)
                return progress.running > 0 or progress.state in ("cleaning", "completed")
            return False

        await wait_for(rendering, timeout_s=60, what=f"{ex.label} to render", poll_s=0.02)

    async def _send_cancel(self, ex: Execution) -> bool:
        """Request a cancel (the server answers OK for a closed job too: only the history
        says whether it reached a run; `model_checks` reads it from there)."""
        before = await chain_facts(self.client, ex.job_id, ex.first_run_id) if ex.closed else []
        try:
            await self.client.get_workflow_handle(ex.job_id).cancel()
        except RPCError:
            return False
        if ex.closed is not None:
            after = await chain_facts(self.client, ex.job_id, ex.first_run_id)
            assert after == before, f"a cancel changed the history of closed job {ex.label}"
            return False
        return True

    async def _send_drain(self, ex: Execution) -> bool:
        handle = self.client.get_workflow_handle(ex.job_id)
        try:
            async with asyncio.timeout(60):
                await handle.execute_update(names.DRAIN_UPDATE, result_type=Progress)
        except (RPCError, WorkflowUpdateFailedError):
            return False
        assert ex.closed is None, f"closed job {ex.label} accepted a drain"
        ex.drain_sent = ex.stop_sent = True
        return True

    async def _wait_oldest(self) -> str | None:
        running = self.open()
        if not running:
            return None
        async with asyncio.timeout(CLOSE_S):
            await asyncio.shield(running[0].closer)
        await self.collect()
        return running[0].label

    def _other(self, out: Path) -> Path:
        return self.out_dirs[1] if out == self.out_dirs[0] else self.out_dirs[0]
