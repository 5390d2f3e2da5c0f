"""Helpers of the reliability tests: worker processes, stand-in FFmpeg scripts, history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from tests.conftest import TEST_HEARTBEAT_THROTTLE_S
from tests.helpers import processes_mentioning
from varia import names
from varia.config import Settings
from varia.names import MANIFEST_NAME
from varia.processes import ProcessIdentity


def varia_script() -> str:
    """The `varia` console script of this venv."""
    return str(Path(sys.executable).parent / "varia")


def real_ffmpeg() -> str:
    """The FFmpeg binary varia uses by default."""
    return Settings().ffmpeg_path()


def write_script(path: Path, body: str) -> Path:
    """Write an executable `/bin/sh` script (a stand-in for FFmpeg) and return its path."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@dataclass
class WorkerProcess:
    """A `varia worker` subprocess, stopped by its pid only."""

    process: subprocess.Popen[bytes]
    identity: ProcessIdentity
    log_path: Path

    @property
    def pid(self) -> int:
        """The worker's pid."""
        return self.process.pid

    def signal(self, sig: int) -> None:
        """Send `sig` to this very process (identity checked)."""
        assert self.identity.send(sig), f"worker {self.pid} is not running"

    def log(self) -> str:
        """What the worker logged so far."""
        return self.log_path.read_text(errors="replace")


@dataclass
class WorkerProcesses:
    """Starts `varia worker` subprocesses and kills any left over at teardown."""

    address: str
    log_dir: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(
        self, task_queue: str, *, command: list[str] | None = None, **env: str
    ) -> WorkerProcess:
        """Start a worker on `task_queue`; `env` adds or overrides VARIA_* variables;
        `command` replaces `varia worker` (run from the repository's root)."""
        variables = {k: v for k, v in os.environ.items() if not k.startswith("VARIA_")}
        variables |= {
            "TEMPORAL_ADDRESS": self.address,
            "VARIA_TASK_QUEUE": task_queue,
            "VARIA_STOP_STAGE_TIMEOUT": "2",
            "VARIA_GRACEFUL_SHUTDOWN": "5",
            "VARIA_HEARTBEAT_THROTTLE": str(TEST_HEARTBEAT_THROTTLE_S),  # as in-process workers
            "VARIA_LOG_LEVEL": "INFO",
            **env,
        }
        log_path = self.log_dir / f"worker-{len(self.started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command or [varia_script(), "worker"],
                cwd=Path(__file__).resolve().parents[2],
                env=variables,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, ProcessIdentity.of(process.pid), log_path)
        self.started.append(worker)
        return worker

    def close(self) -> None:
        """SIGKILL every worker this factory started that still runs (by pid + create time)."""
        for worker in self.started:
            if worker.process.poll() is None:
                worker.identity.send(signal.SIGKILL)
                worker.process.wait(10)


def job_processes(job_id: str) -> list[int]:
    """Pids of live processes whose command line mentions the job (its FFmpeg)."""
    return [proc.pid for proc in processes_mentioning(job_id)]


def leftovers(job_dir: Path) -> list[str]:
    """Temporary or partial files left in a job directory."""
    if not job_dir.is_dir():
        return []
    return sorted(
        p.name for p in job_dir.iterdir() if names.parse_temp_name(p.name) or ".varia-tmp" in p.name
    )


def snapshot(job_dir: Path) -> dict[str, Any]:
    """The job directory's names and sizes, and the manifest's bytes (for 'changes nothing')."""
    if not job_dir.is_dir():
        return {}
    state: dict[str, Any] = {p.name: p.lstat().st_size for p in job_dir.iterdir()}
    manifest = job_dir / MANIFEST_NAME
    state["<manifest>"] = manifest.read_bytes() if manifest.exists() else None
    return state


@dataclass(frozen=True)
class RenderStart:
    """One render attempt that Temporal recorded as started."""

    activity_id: str
    attempt: int
    last_failure: str
    last_failure_type: str


async def history_facts(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """What the history says: render starts, and renders scheduled after a cancel request."""
    scheduled: dict[int, tuple[str, str]] = {}
    starts: list[RenderStart] = []
    cancel_seen = False
    renders_completed = 0
    renders_after_cancel: list[str] = []
    events = 0
    kinds: list[str] = []
    async for event in handle.fetch_history_events():
        events += 1
        kinds.append(EventType.Name(event.event_type).removeprefix("EVENT_TYPE_"))
        if event.HasField("workflow_execution_cancel_requested_event_attributes"):
            cancel_seen = True
        elif event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, attrs.activity_id)
            if cancel_seen and attrs.activity_type.name == names.RENDER:
                renders_after_cancel.append(attrs.activity_id)
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            renders_completed += scheduled.get(done.scheduled_event_id, ("", ""))[0] == names.RENDER
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            kind, activity_id = scheduled.get(started.scheduled_event_id, ("", ""))
            if kind == names.RENDER:
                failure = started.last_failure
                starts.append(
                    RenderStart(
                        activity_id,
                        started.attempt,
                        _failure_text(failure),
                        failure.application_failure_info.type,
                    )
                )
    return {
        "render_starts": starts,
        "cancel_requested": cancel_seen,
        "renders_after_cancel": renders_after_cancel,
        "events": events,
        "renders_completed": renders_completed,
        "kinds": kinds,
    }


def _failure_text(failure: Any) -> str:
    parts = []
    while failure is not None and failure.message:
        parts.append(failure.message)
        failure = failure.cause if failure.HasField("cause") else None
    return " | ".join(parts)


class Stopwatch:
    """Seconds since creation (for the recovery figures printed by the fault tests)."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.start, 2)
