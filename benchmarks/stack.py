"""What a benchmark runs against: its own dev server, worker subprocesses, an FFmpeg watch.

Everything is started as our child with the parent-death signal and stopped by its pid, so a
benchmark that fails or is interrupted leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from varia.client.connection import connect
from varia.client.jobs import Jobs
from varia.config import Settings
from varia.models import JobRequest, JobResult
from varia.processes import ProcessIdentity, death_signal_hook, terminate
from varia.server import DevServer, free_port

JobHandle = WorkflowHandle[Any, JobResult]


@dataclass
class WorkerProcess:
    """A `varia worker` subprocess on its own task queue."""

    task_queue: str
    process: subprocess.Popen[bytes]
    identity: ProcessIdentity
    log_path: Path
    stop_log: Path

    def stops_since(self, wall_time: float) -> list[dict[str, Any]]:
        """The FFmpeg stops the worker logged that began at or after `wall_time`."""
        return [s for s in self._stop_log() if s.get("begin", -1.0) >= wall_time]

    def pushes_since(self, wall_time: float) -> list[float]:
        """When pushed stops reached this worker (wall clock), at or after `wall_time`."""
        return [s["pushed"] for s in self._stop_log() if s.get("pushed", -1.0) >= wall_time]

    def measure_cpu_since(self, wall_time: float) -> float:
        """CPU seconds the worker spent measuring outputs' quality since `wall_time`."""
        log = self._stop_log()
        return float(sum(s["measure_cpu_s"] for s in log if s.get("measured", -1.0) >= wall_time))

    def _stop_log(self) -> list[dict[str, Any]]:
        if not self.stop_log.exists():
            return []
        return [json.loads(line) for line in self.stop_log.read_text().splitlines() if line]

    @property
    def pid(self) -> int:
        """The worker's pid."""
        return self.process.pid

    def rss_mb(self) -> float:
        """The worker's resident memory in MiB (NaN once it exited)."""
        proc = self.identity.process()
        if proc is None:
            return float("nan")
        try:
            return float(proc.memory_info().rss) / 2**20
        except psutil.Error:
            return float("nan")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it lingers; by pid + create time."""
        terminate(self.process, self.identity, timeout_s)


@dataclass
class Stack:
    """A dev server, a client and any number of workers; `async with Stack(...) as stack`."""

    name: str
    keep_dir: bool = False
    metrics: bool = False
    """Serve the dev server's Prometheus metrics (`request_counts`)."""
    root: Path = field(init=False)
    server: DevServer = field(init=False)
    client: Client = field(init=False)
    workers: list[WorkerProcess] = field(default_factory=list)

    async def __aenter__(self) -> Stack:
        self.root = Path(tempfile.mkdtemp(prefix=f"varia-bench-{self.name}-"))
        self.server = DevServer(
            ui=False,
            log_path=self.root / "temporal.log",
            metrics_port=free_port() if self.metrics else None,
        )
        try:
            await self.server.start()
            self.client = await connect(Settings(TEMPORAL_ADDRESS=self.server.address))
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(worker.stop)
        self.workers.clear()
        with contextlib.suppress(Exception):
            self.server.stop()
        if not self.keep_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def request_counts(self, service: str = "frontend") -> dict[str, float]:
        """The requests `service` of the dev server has handled so far, by operation (its
        `service_requests` counter; needs `metrics=True`): the frontend's are the calls
        clients and workers made, each once."""
        assert self.server.metrics_port is not None, "Stack(metrics=True) serves the counters"
        url = f"http://{self.server.host}:{self.server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        counts: dict[str, float] = {}
        pattern = re.compile(r'operation="([^"]+)".*service_name="([^"]+)"')
        for line in text.splitlines():
            found = pattern.search(line) if line.startswith("service_requests{") else None
            if found and found.group(2) == service:
                operation = found.group(1)
                counts[operation] = counts.get(operation, 0.0) + float(line.rsplit(" ", 1)[1])
        return counts

    @property
    def out_dir(self) -> Path:
        """Where jobs write (each into its own job directory)."""
        return self.root / "out"

    async def start_worker(
        self,
        *,
        max_renders: int = 4,
        nice: int = 0,
        heartbeat_cap_s: float | None = None,
        stats_period_s: float | None = None,
        task_queue: str | None = None,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        """Start `varia worker` as a subprocess and wait until it polls its task queue.

        The worker logs every FFmpeg stop to `worker.stop_log` (see `benchmarks.worker_main`);
        `heartbeat_cap_s` and `stats_period_s` override its heartbeat throttle cap and
        FFmpeg's `-stats_period`; `env` adds or overrides environment variables.
        """
        queue = task_queue or f"bench-{self.name}-{secrets.token_hex(3)}"
        stop_log = self.root / f"stops-{queue}.jsonl"
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.server.address,
            "VARIA_TASK_QUEUE": queue,
            "VARIA_MAX_CONCURRENT_RENDERS": str(max_renders),
            "VARIA_FFMPEG_NICE": str(nice),
            "VARIA_LOG_LEVEL": "WARNING",
            "VARIA_GRACEFUL_SHUTDOWN": "3",
            "BENCH_STOP_LOG": str(stop_log),
            "BENCH_HEARTBEAT_CAP_S": "" if heartbeat_cap_s is None else str(heartbeat_cap_s),
            "BENCH_STATS_PERIOD_S": "" if stats_period_s is None else str(stats_period_s),
            **(env or {}),
        }
        log_path = self.root / f"worker-{queue}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.worker_main"],
                cwd=Path(__file__).resolve().parents[1],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                preexec_fn=death_signal_hook(),
            )
        worker = WorkerProcess(queue, process, ProcessIdentity.of(process.pid), log_path, stop_log)
        self.workers.append(worker)
        await self._wait_polling(worker)
        return worker

    async def stop_worker(self, worker: WorkerProcess) -> None:
        """Stop one worker and forget it."""
        await asyncio.to_thread(worker.stop)
        self.workers.remove(worker)

    async def _wait_polling(self, worker: WorkerProcess, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker exited early; see {worker.log_path}")
            ready = True
            for kind in kinds:
                answer = await self.client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=self.client.namespace,
                        task_queue=TaskQueue(name=worker.task_queue),
                        task_queue_type=kind,
                    ),
                    timeout=timedelta(seconds=5),
                )
                ready = ready and bool(answer.pollers)
            if ready:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"worker did not poll within {timeout_s}s; see {worker.log_path}")

    async def start_job(
        self, worker: WorkerProcess, request: JobRequest, job_id: str | None = None
    ) -> JobHandle:
        """Start a `VariationJob` on the worker's task queue (the CLI's own start path)."""
        settings = Settings(
            TEMPORAL_ADDRESS=self.server.address, VARIA_TASK_QUEUE=worker.task_queue
        )
        started = await Jobs(self.client, settings).start(request, job_id or new_job_id())
        return self.client.get_workflow_handle(started, result_type=JobResult)

    def job_dir(self, job_id: str) -> Path:
        """The job directory of a job that writes to `out_dir`."""
        return self.out_dir / job_id

    def watch(self, worker: WorkerProcess, job_id: str) -> FfmpegWatch:
        """An FFmpeg watch for one job of this stack (use it as a context manager)."""
        return FfmpegWatch({worker.pid}, f"{self.job_dir(job_id)}/")


def new_job_id(prefix: str = "job") -> str:
    """A fresh job id for a benchmark job."""
    return f"bench-{prefix}-{secrets.token_hex(4)}"


def request(
    inputs: list[Path],
    variations: int,
    out_dir: Path,
    *,
    concurrency: int = 2,
    threads: int | None = None,
    chunk_size: int | None = None,
    seed: int = 0,
) -> JobRequest:
    """A job request with absolute paths."""
    return JobRequest(
        inputs=[str(path.absolute()) for path in inputs],
        variations=variations,
        output_dir=str(out_dir.absolute()),
        concurrency=concurrency,
        threads=threads,
        chunk_size=chunk_size,
        seed=seed,
    )


def _stat_fields(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of a live, non-zombie pid, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


class FfmpegWatch:
    """Tightly polls for the FFmpeg processes of a job: children of `parents` whose command
    line contains `fragment` (the job directory). Records when each was first seen alive and
    when it was first seen gone (exited or a zombie), on the `time.monotonic()` clock.

    Cheap enough to poll every few ms on 2 cores: only new pids are read in full.
    """

    def __init__(self, parents: set[int], fragment: str, interval_s: float = 0.004) -> None:
        self.parents, self.fragment, self.interval_s = parents, fragment, interval_s
        self.spawned: dict[tuple[int, int], float] = {}
        self.exited: dict[tuple[int, int], float] = {}
        self.outputs: dict[tuple[int, int], str] = {}  # the last argv item: FFmpeg's output
        self.wall_offset = time.time() - time.monotonic()
        self._seen: dict[int, tuple[int, int] | None] = {}  # pid -> key if it is ours
        self._pending: dict[int, int] = {}  # worker children not matched yet -> start ticks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ffmpeg-watch", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> FfmpegWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(self.interval_s)

    def poll(self) -> None:
        """One pass over /proc (the thread calls it; callers may too)."""
        now = time.monotonic()
        pids = set(psutil.pids())
        with self._lock:
            for pid in [p for p in self._seen if p not in pids]:
                self._forget(pid, now)
            for pid in pids.difference(self._seen):
                fields = _stat_fields(pid)
                if fields is not None and fields[0] in self.parents:
                    self._pending[pid] = fields[1]
                self._seen[pid] = None
            for pid, ticks in list(self._pending.items()):  # maybe not exec'd yet at first
                argv = _cmdline(pid)
                if any(self.fragment in arg for arg in argv):
                    key = (pid, ticks)
                    self._seen[pid] = key
                    self.spawned[key] = now
                    self.outputs[key] = argv[-1]
                    del self._pending[pid]
            for pid, seen in self._seen.items():
                if seen is not None and seen not in self.exited and _stat_fields(pid) is None:
                    self.exited[seen] = now

    def _forget(self, pid: int, now: float) -> None:
        key = self._seen.pop(pid)
        self._pending.pop(pid, None)
        if key is not None and key not in self.exited:
            self.exited[key] = now

    def alive(self) -> int:
        """How many of the job's FFmpeg processes are running now (as of the last poll)."""
        with self._lock:
            return sum(1 for key in self.spawned if key not in self.exited)

    def last_exit(self) -> float | None:
        """When the last FFmpeg of the job was seen gone (None while any runs)."""
        with self._lock:
            if any(key not in self.exited for key in self.spawned):
                return None
            return max(self.exited.values(), default=None)

    def wall_spans(self) -> dict[str, tuple[float, float]]:
        """(spawn, exit) on the wall clock (`time.time()`) by FFmpeg output file name."""
        with self._lock:
            return {
                Path(self.outputs[key].removeprefix("file:")).name: (
                    t + self.wall_offset,
                    self.exited.get(key, float("nan")) + self.wall_offset,
                )
                for key, t in self.spawned.items()
            }

    def intervals(self) -> list[tuple[float, float]]:
        """(spawn, exit) of every FFmpeg seen so far (exit NaN while it runs)."""
        with self._lock:
            return [(t, self.exited.get(key, float("nan"))) for key, t in self.spawned.items()]


async def cancel_and_wait(handle: WorkflowHandle[Any, Any]) -> tuple[str, float, float]:
    """Cancel a job and wait until it closed: (its end state, monotonic time the cancel was
    sent, monotonic time it closed). `completed` when completion won over the cancel."""
    cancelled_at = time.monotonic()
    await handle.cancel()
    state = "completed"
    try:
        await handle.result()
    except WorkflowFailureError:
        state = "cancelled"
    return state, cancelled_at, time.monotonic()
