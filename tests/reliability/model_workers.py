"""The workers of the model-based test.

The workflow and its light activities (prepare, record, cleanup) run on a worker in the test
process, which an operation restarts (the new one replays the histories). Renders run in a
`render_worker` subprocess, which an operation SIGKILLs mid-render (kills in prepare, record
and cleanup: `test_step_faults`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from temporalio.client import Client
from temporalio.worker import Worker

from tests.helpers import processes_mentioning, wait_for
from varia.config import Settings
from varia.processes import ProcessIdentity
from varia.worker import build_job_worker

REPO = Path(__file__).resolve().parents[2]


class Workers:
    """One workflow worker in process and one render worker subprocess, each replaceable."""

    def __init__(self, client: Client, settings: Settings, log_dir: Path) -> None:
        self.client, self.settings, self.log_dir = client, settings, log_dir
        self.light: Worker | None = None
        self.render: tuple[subprocess.Popen[bytes], ProcessIdentity] | None = None
        self.render_count = 0

    async def __aenter__(self) -> Workers:
        await self._start_light()
        self._start_render()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self.light is not None:
                await self.light.__aexit__(None, None, None)
        finally:
            self._stop_render(signal.SIGTERM)

    async def restart_light(self) -> None:
        """Shut the workflow worker down gracefully and start a new one."""
        assert self.light is not None
        await self.light.__aexit__(None, None, None)
        self.light = None
        await self._start_light()

    async def kill_render(self, working_in: Path) -> int:
        """SIGKILL the render worker, prove its FFmpeg died with it, start a new one.

        Returns how many processes working in `working_in` (its FFmpeg) were running."""
        ffmpeg = _identities(processes_mentioning(str(working_in)))
        self._stop_render(signal.SIGKILL)
        await wait_for(
            lambda: not any(identity.is_alive() for identity in ffmpeg),
            timeout_s=15,
            what="the killed worker's FFmpeg to die with it",
        )
        self._start_render()
        return len(ffmpeg)

    async def _start_light(self) -> None:
        worker = build_job_worker(self.client, self.settings)
        await worker.__aenter__()
        self.light = worker

    def _start_render(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VARIA_")}
        env |= {
            "TEMPORAL_ADDRESS": self.settings.temporal_address,
            "VARIA_TASK_QUEUE": self.settings.task_queue,
            "VARIA_ALLOWED_INPUT_ROOTS": ":".join(map(str, self.settings.allowed_input_roots)),
            "VARIA_STOP_STAGE_TIMEOUT": str(self.settings.stop_stage_timeout_s),
            "VARIA_GRACEFUL_SHUTDOWN": str(self.settings.graceful_shutdown_s),
            "VARIA_HEARTBEAT_THROTTLE": str(self.settings.heartbeat_throttle_s),
            "VARIA_MAX_CONCURRENT_RENDERS": "2",
        }
        self.render_count += 1
        with open(self.log_dir / f"render-worker-{self.render_count}.log", "wb") as log:
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
        """Stop the render worker by its pid (identity checked); SIGKILL if SIGTERM hangs."""
        if self.render is None:
            return
        process, identity = self.render
        self.render = None
        if process.poll() is None:
            identity.send(sig)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                identity.send(signal.SIGKILL)
                process.wait(15)


def _identities(processes: list[psutil.Process]) -> list[ProcessIdentity]:
    found = []
    for process in processes:
        try:
            found.append(ProcessIdentity(process.pid, process.create_time()))
        except psutil.NoSuchProcess:
            continue
    return found
