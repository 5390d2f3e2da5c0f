"""Model-based test: seeded random operations on the real server, invariants after every step.

Operations (`model_world`): start a job (a random multiset of inputs whose names clash:
`/a/x.mp4`, `/b/x.mp4`, `/c/x-1.mp4`, `/d/X.mp4`, `/e/x~0.mp4`; 1-3 variations, concurrency 1-2,
a seed, often a `chunk_size` of 1 or 2 so runs continue as new), a bad input among good ones
(missing, a text file, an HLS playlist whose segment lies outside the allowed roots), start
again under a used workflow id (same or another output_dir), cancel, drain, drain right after
a continue-as-new, SIGKILL the render worker (a new one takes over), restart the workflow
worker, wait. After every step: each newly closed execution meets `model_checks`; every closed
job's directory is byte-identical to when it closed (no earlier run's output changed, a refused
execution wrote nothing); the inputs are unchanged; the sentinel dir is unchanged and unread;
nothing but job directories appeared in the output dirs. At the end of a run no FFmpeg is left.

Short profile (every `make test`): `SHORT_RUNS` runs of `OPS` operations from `SHORT_SEED`;
every run does every kind of operation at least once. Long profile: `VARIA_MODEL_RUNS=30
.venv/bin/python -m pytest -s -m model_long tests/reliability/test_model_based.py`
(`VARIA_MODEL_SEED` picks the seed, else a random one is printed; run r uses seed + r;
`VARIA_MODEL_OPS` sets the operations per run). A failing run prints its seed and operations;
its replay command runs that one run again.
"""

from __future__ import annotations

import os
import random
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.reliability.model_support import Inputs, make_inputs
from tests.reliability.model_workers import Workers
from tests.reliability.model_world import Tally, World
from varia.config import Settings

SHORT_SEED = 20_260_901
SHORT_RUNS = 2
OPS = int(os.environ.get("VARIA_MODEL_OPS", "10"))
LONG_RUNS = int(os.environ.get("VARIA_MODEL_RUNS", "0"))
SEED = int(os.environ.get("VARIA_MODEL_SEED", "0")) or None
KINDS = ("start", "start_bad", "reuse", "cancel", "drain", "drain_boundary", "kill", "restart")
WEIGHTS = (4.0, 1.5, 2.0, 2.0, 1.5, 1.0, 1.0, 0.7, 1.5)  # the last: "wait"
REPLAY = (
    "VARIA_MODEL_SEED={seed} VARIA_MODEL_RUNS=1 VARIA_MODEL_OPS={ops} .venv/bin/python -m "
    "pytest -q -s -m model_long tests/reliability/test_model_based.py"
)


@pytest.fixture(scope="module")
def model_inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("model"))


@pytest_asyncio.fixture
async def world(
    client: Client, settings: Settings, model_inputs: Inputs, tmp_path: Path
) -> AsyncIterator[World]:
    confined = settings.model_copy(update={"allowed_input_roots": [model_inputs.root]})
    async with Workers(client, confined, tmp_path) as workers:
        yield World(client, workers, model_inputs, tmp_path)


def choose(rng: random.Random, done: Counter[str], ops_left: int) -> str:
    """The next operation: one this run has not done yet, when the run must still do it (or
    half the time); otherwise by weight."""
    missing = [kind for kind in KINDS if not done[kind]]
    if missing and (ops_left <= len(missing) or rng.random() < 0.5):
        return rng.choice(missing)
    return rng.choices([*KINDS, "wait"], weights=WEIGHTS)[0]


async def run_session(world: World, seed: int, runs: int) -> Tally:
    """`runs` runs of `OPS` operations; run r draws from `random.Random(seed + r)`. A violation
    ends its run (recorded with its replay command); the next run starts afresh."""
    tally = world.tally
    print(f"\nMODEL seed={seed} runs={runs} ops/run={OPS}")
    for run in range(runs):
        run_seed, began = seed + run, time.monotonic()
        rng = random.Random(run_seed)
        world.begin_run(run, run_seed)
        done: Counter[str] = Counter()
        try:
            for step in range(OPS):
                kind = choose(rng, done, OPS - step)
                done[kind] += 1
                tally.kinds[kind] += 1
                tally.ops += 1
                world.log.append(f"{step}: {kind} …")  # (shown as is if it fails)
                began_op = time.monotonic()
                world.log[-1] = f"{step}: {kind}: {await world.do(kind, rng)}"
                await world.check()
                world.log[-1] += f" [{time.monotonic() - began_op:.1f}s]"
            await world.end_run()
        except Exception as err:
            where = traceback.extract_tb(err.__traceback__)[-1]
            tally.violations.append(
                f"MODEL VIOLATION seed={run_seed} (replay: {REPLAY.format(seed=run_seed, ops=OPS)})"
                "\n  " + "\n  ".join(world.log) + f"\n{type(err).__name__}: {err}"
                f"\n  at {Path(where.filename).name}:{where.lineno}: {where.line}"
            )
            print(tally.violations[-1])
            await world.abandon_run()
        tally.runs += 1
        print(f"MODEL run {run} seed={run_seed} ({time.monotonic() - began:.0f}s):")
        print("  " + "\n  ".join(world.log))
    print(
        f"MODEL seed={seed} runs={tally.runs} ops={tally.ops} executions={tally.executions} "
        f"outcomes={dict(tally.outcomes)} outputs_checked={tally.outputs_checked} "
        f"kills_mid_render={tally.kills_mid_render} "
        f"drains_in_first_task_of_continued_run={tally.drains_in_first_task} "
        f"kinds={dict(tally.kinds)} violations={len(tally.violations)}"
    )
    return tally


async def test_model_short_profile(world: World) -> None:
    """A few seeded runs on every `make test`; every run does every kind of operation."""
    tally = await run_session(world, SEED or SHORT_SEED, SHORT_RUNS)
    assert tally.violations == [], "\n\n".join(tally.violations)
    assert tally.runs == SHORT_RUNS and set(tally.kinds) >= set(KINDS), tally.kinds


@pytest.mark.model_long
@pytest.mark.skipif(LONG_RUNS <= 0, reason="the long profile runs with VARIA_MODEL_RUNS=N")
@pytest.mark.timeout(max(240, 240 * LONG_RUNS))
async def test_model_long_profile(world: World) -> None:
    """`VARIA_MODEL_RUNS` runs from `VARIA_MODEL_SEED` (else a random seed, printed)."""
    tally = await run_session(world, SEED or random.SystemRandom().randrange(10**6), LONG_RUNS)
    assert tally.violations == [], "\n\n".join(tally.violations)
    assert tally.runs == LONG_RUNS
