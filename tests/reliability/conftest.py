"""Fixtures of the reliability tests: tiny clips, worker subprocesses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

pytest.register_assert_rewrite(  # their asserts explain themselves like a test's
    "tests.reliability.model_checks",
    "tests.reliability.model_support",
    "tests.reliability.model_world",
)

from tests.reliability.support import WorkerProcesses  # noqa: E402 (after the rewrite hook)
from varia.clips import make_clip  # noqa: E402


@dataclass(frozen=True)
class TinyClips:
    """Inputs small enough for many short jobs."""

    tiny: Path  # 1 s, 160x120, with audio
    small: Path  # 3 s, 320x240, no audio
    odd: Path  # 1 s, a name with a leading '-', spaces, quotes and unicode


@pytest.fixture(scope="session")
def tiny_clips(tmp_path_factory: pytest.TempPathFactory) -> TinyClips:
    root = tmp_path_factory.mktemp("tiny clips")
    return TinyClips(
        tiny=make_clip(root / "tiny.mp4", seconds=1, size="160x120"),
        small=make_clip(root / "small.mp4", seconds=3, size="320x240", audio=False),
        odd=make_clip(root / "-odd 'name' \"q\" ünï cødé.mp4", seconds=1, size="160x120"),
    )


@pytest.fixture
def worker_processes(env: WorkflowEnvironment, tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Starts `varia worker` subprocesses against the session server; kills leftovers."""
    factory = WorkerProcesses(env.client.service_client.config.target_host, tmp_path)
    yield factory
    factory.close()
