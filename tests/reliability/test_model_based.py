"""Model-based test: seeded random operations on the real server, invariants after every step.

Operations: start a job (a random multiset of inputs whose names clash: `/a/x.mp4`, `/b/x.mp4`,
`/c/x-1.mp4`, `/d/X.mp4`, `/e/x~0.mp4`; 1-3 variations, concurrency 1-2, a seed, often a
`chunk_size` of 1 or 2 so runs continue as new), a bad input among good ones (missing, a text
file, an HLS playlist whose segment lies outside the allowed roots), start again under a used
workflow id (same or another output_dir), cancel, drain, drain right after a continue-as-new,
SIGKILL the render worker (a new one takes over), restart the workflow worker, wait.
After every step (`World.check`): each newly closed execution meets `model_checks`, every closed
job's directory is byte-identical to when it closed (no earlier run's output changed, a refused
execution wrote nothing), the inputs are unchanged, the sentinel dir is unchanged and unread,
and nothing but job directories appeared in the output dirs.

Short profile in `make test`: `SHORT_RUNS` runs of `OPS` operations from `SHORT_SEED`. Long:
`VARIA_MODEL_RUNS=50 pytest -m model_long tests/reliability/test_model_based.py -s`
(`VARIA_MODEL_SEED` picks the seed; run r uses seed + r). A failing run prints its seed and its
operations; replay it with `VARIA_MODEL_SEED=<seed> VARIA_MODEL_RUNS=1`.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.reliability.model_support import Inputs, make_inputs
from tests.reliability.model_world import OPS, SHORT_RUNS, World, run_session

SHORT_SEED = 20_260_901
LONG_RUNS = int(os.environ.get("VARIA_MODEL_RUNS", "0"))
SEED = int(os.environ.get("VARIA_MODEL_SEED", "0")) or None


@pytest.fixture(scope="module")
def model_inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("model"))


@pytest_asyncio.fixture
async def world(
    env: WorkflowEnvironment, client: Client, task_queue: str, model_inputs: Inputs, tmp_path: Path
) -> AsyncIterator[World]:
    address = env.client.service_client.config.target_host
    async with World(client, address, task_queue, model_inputs, tmp_path) as running:
        yield running


async def test_model_short_profile(world: World) -> None:
    """A few seeded runs on every `make test`; every kind of operation occurs."""
    seed = SEED or SHORT_SEED
    tally = await run_session(world, seed, runs=SHORT_RUNS, ops=OPS)
    assert tally.violations == [], "\n\n".join(tally.violations)
    assert set(tally.kinds) == set(World.KINDS), f"not every operation ran: {tally.kinds}"


@pytest.mark.model_long
@pytest.mark.skipif(LONG_RUNS <= 0, reason="long profile: set VARIA_MODEL_RUNS=N")
@pytest.mark.timeout(max(240, 150 * LONG_RUNS))
async def test_model_long_profile(world: World) -> None:
    """`VARIA_MODEL_RUNS` runs; a violation in one run is recorded and the next run goes on."""
    seed = SEED or random.SystemRandom().randrange(10**6)
    tally = await run_session(world, seed, runs=LONG_RUNS, ops=OPS)
    assert tally.violations == [], "\n\n".join(tally.violations)
    assert tally.runs == LONG_RUNS and isinstance(tally.kinds, Counter)
