"""The operations of the model-based test, the world they act on, and the session loop.

The workflow and its light activities run on a worker in the test process (restarted by an
operation); renders run in a `render_worker` subprocess that an operation SIGKILLs mid-render.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from tests.helpers import processes_mentioning, wait_for
from tests.reliability.model_checks import Execution, await_close, check_closed
from tests.reliability.model_support import BAD_KINDS, Clip, Inputs, chain_facts, digest
from varia.config import Settings
from varia.ffmpeg.process import ProcessIdentity
from varia.models import JobResult, Progress
from varia.worker import build_job_worker

OPS = 10
"""Operations per run (each run does every kind at least once)."""
SHORT_RUNS = 2
MAX_OPEN = 3
"""Jobs open at once; a start beyond waits for the oldest to close."""
CLOSE_S = 240.0
"""Deadline for a job to close (a render retried after a kill waits its 10 s heartbeat)."""
REPO = Path(__file__).resolve().parents[2]
REPLAY = (
    "VARIA_MODEL_SEED={seed} VARIA_MODEL_RUNS=1 .venv/bin/python -m pytest -q -s "
    "tests/reliability/test_model_based.py -k long"
)


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
    violations: list[str] = field(default_factory=list)


class World:
    """Workers, directories and the executions of the current run; one method per operation."""

    KINDS = (
        "start",
        "start_bad",
        "reuse",
        "cancel",
        "drain",
        "drain_boundary",
        "kill",
        "restart",
        "wait",
    )
    WEIGHTS = (4.0, 1.5, 2.0, 2.0, 1.5, 1.0, 1.0, 0.7, 1.5)

    def __init__(
        self, client: Client, address: str, task_queue: str, inputs: Inputs, base: Path
    ) -> None:
        self.client, self.task_queue, self.inputs, self.base = client, task_queue, inputs, base
        self.settings = Settings(
            TEMPORAL_ADDRESS=address,
            VARIA_TASK_QUEUE=task_queue,
            VARIA_ALLOWED_INPUT_ROOTS=str(inputs.root),
            VARIA_STOP_STAGE_TIMEOUT=2.0,
            VARIA_GRACEFUL_SHUTDOWN=5.0,
        )
        self.address, self.token = address, uuid.uuid4().hex[:6]
        self.light: Worker | None = None
        self.render: tuple[subprocess.Popen[bytes], ProcessIdentity] | None = None
        self.renders_started = 0
        self.baseline_inputs = digest(inputs.root)
        self.baseline_sentinel = digest(inputs.sentinel, atime=True)
        self.tally = Tally()
        self.begin_run(-1, 0)

    # ---- workers -----------------------------------------------------------------------

    async def __aenter__(self) -> World:
        await self._start_light()
        self._start_render()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.light is not None:
            await self.light.__aexit__(None, None, None)
        self._stop_render(signal.SIGTERM)

    async def _start_light(self) -> None:
        self.light = build_job_worker(self.client, self.settings)
        await self.light.__aenter__()

    def _start_render(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VARIA_")}
        env |= {
            "TEMPORAL_ADDRESS": self.address,
            "VARIA_TASK_QUEUE": self.task_queue,
            "VARIA_ALLOWED_INPUT_ROOTS": str(self.inputs.root),
            "VARIA_STOP_STAGE_TIMEOUT": "2",
            "VARIA_GRACEFUL_SHUTDOWN": "5",
            "VARIA_MAX_CONCURRENT_RENDERS": "2",
        }
        self.renders_started += 1
        with open(self.base / f"render-worker-{self.renders_started}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.render_worker"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.render = (process, ProcessIdentity.of(process.pid))

    def _stop_render(self, sig: int) -> None:
        if self.render is None:
            return
        process, identity = self.render
        if process.poll() is None:
            identity.send(sig)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                identity.send(signal.SIGKILL)
                process.wait(15)
        self.render = None

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
        return f"{kind}: {line}"

    async def op_start(self, rng: random.Random) -> str:
        return await self._start(rng, bad=False)

    async def op_start_bad(self, rng: random.Random) -> str:
        return await self._start(rng, bad=True)

    async def op_reuse(self, rng: random.Random) -> str:
        await self.collect()
        if not any(ex.closed for ex in self.executions):
            if not self.open():
                await self._start(rng, bad=False)
            await self._wait_oldest()
            await self.collect()
        ids_open = {ex.job_id for ex in self.open()}
        earlier = rng.choice([e for e in self.executions if e.closed and e.job_id not in ids_open])
        same = rng.random() < 0.7
        out = earlier.output_dir if same else self._other(earlier.output_dir)
        return await self._start(rng, bad=rng.random() < 0.2, job_id=earlier.job_id, out=out)

    async def op_cancel(self, rng: random.Random) -> str:
        return await self._stop(rng, "cancel")

    async def op_drain(self, rng: random.Random) -> str:
        return await self._stop(rng, "drain")

    async def op_drain_boundary(self, rng: random.Random) -> str:
        """A job whose every run renders one variation; drain it as soon as it continued."""
        line = await self._start(rng, bad=False, chunk=1, at_least=3)
        ex = self.executions[-1]
        handle = self.client.get_workflow_handle(ex.job_id)

        async def continued() -> bool:
            return ex.closer.done() or (await handle.describe()).run_id != ex.first_run_id

        await wait_for(continued, timeout_s=60, what=f"{ex.label} to continue as new", poll_s=0.01)
        accepted = await self._send_drain(ex)
        return f"{line}; drain after its first run: {'accepted' if accepted else 'refused'}"

    async def op_kill(self, rng: random.Random) -> str:
        """SIGKILL the render worker (mid-render when a render runs); start a new one."""
        with contextlib.suppress(AssertionError):
            await wait_for(
                lambda: processes_mentioning(str(self.run_root)), timeout_s=10, what="an FFmpeg"
            )
        ffmpeg = [ProcessIdentity.of(p.pid) for p in processes_mentioning(str(self.run_root))]
        self._stop_render(signal.SIGKILL)
        self.tally.kills_mid_render += bool(ffmpeg)
        await wait_for(
            lambda: not any(_alive(identity) for identity in ffmpeg),
            timeout_s=15,
            what="the killed worker's FFmpeg to die with it",
        )
        self._start_render()
        return f"render worker killed with {len(ffmpeg)} FFmpeg running; a new one started"

    async def op_restart(self, rng: random.Random) -> str:
        """Shut the workflow worker down and start a new one (histories are replayed)."""
        assert self.light is not None
        await self.light.__aexit__(None, None, None)
        await self._start_light()
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
        variations = max(rng.randint(1, 3), -(-at_least // len(clips)))
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
        handle = await self.client.start_workflow(
            "VariationJob", request, id=job_id, task_queue=self.task_queue, result_type=JobResult
        )
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
                progress = await handle.query("progress", result_type=Progress)
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
                await handle.execute_update("drain", result_type=Progress)
        except (RPCError, WorkflowUpdateFailedError):
            return False
        assert ex.closed is None, f"closed job {ex.label} accepted a drain"
        ex.drain_sent = True
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


def _alive(identity: ProcessIdentity) -> bool:
    try:
        process = psutil.Process(identity.pid)
        return process.create_time() == identity.create_time and process.status() != "zombie"
    except psutil.NoSuchProcess:
        return False


def choose(rng: random.Random, done: Counter[str], ops_left: int) -> str:
    """The next operation: one not done yet in this run when the run must still cover it (or
    half the time), else by weight."""
    missing = [kind for kind in World.KINDS if not done[kind]]
    if missing and (ops_left <= len(missing) or rng.random() < 0.5):
        return rng.choice(missing)
    return rng.choices(World.KINDS, weights=World.WEIGHTS)[0]


async def run_session(world: World, seed: int, *, runs: int, ops: int) -> Tally:
    """`runs` runs of `ops` operations; run r draws from `random.Random(seed + r)`."""
    tally = world.tally
    print(f"\nMODEL seed={seed} runs={runs} ops={ops} (replay a run: VARIA_MODEL_SEED=<its seed>)")
    for run in range(runs):
        run_seed = seed + run
        rng = random.Random(run_seed)
        world.begin_run(run, run_seed)
        done: Counter[str] = Counter()
        try:
            for step in range(ops):
                kind = choose(rng, done, ops - step)
                done[kind] += 1
                tally.kinds[kind] += 1
                tally.ops += 1
                world.log.append(f"{step}: " + await world.do(kind, rng))
                await world.check()
            await world.end_run()
        except Exception as err:
            ops_text = "\n  ".join(world.log)
            tally.violations.append(
                f"MODEL VIOLATION seed={run_seed} (replay: {REPLAY.format(seed=run_seed)})\n"
                f"  {ops_text}\n{type(err).__name__}: {err}"
            )
            print(tally.violations[-1])
            await world.abandon_run()
        tally.runs += 1
        print(
            f"MODEL run {run} seed={run_seed}: {len(world.log)} ops, "
            f"{len(world.executions)} executions"
        )
    print(
        f"MODEL seed={seed} runs={tally.runs} ops={tally.ops} executions={tally.executions} "
        f"outcomes={dict(tally.outcomes)} outputs_checked={tally.outputs_checked} "
        f"kills_mid_render={tally.kills_mid_render} kinds={dict(tally.kinds)} "
        f"violations={len(tally.violations)}"
    )
    return tally
