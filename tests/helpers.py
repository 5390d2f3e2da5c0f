"""Shared test helpers: waiting on conditions with a deadline, FFmpeg accounting, manifests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from varia import media, names
from varia.client.jobs import Jobs
from varia.config import Settings
from varia.models import (
    JobCarry,
    JobRequest,
    JobResult,
    MediaInfo,
    Progress,
    RenderHeartbeat,
    RenderTask,
)
from varia.names import MANIFEST_NAME, WORKFLOW_TYPE
from varia.recipes import make_recipe

T = TypeVar("T")


async def wait_for(
    condition: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    *,
    timeout_s: float = 60.0,
    what: str = "condition",
    poll_s: float = 0.05,
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(poll_s)


def processes_mentioning(fragment: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains `fragment`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(fragment in arg for arg in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def read_manifest(job_dir: Path) -> dict[str, Any]:
    return json.loads((job_dir / MANIFEST_NAME).read_text())


def assert_manifest_matches_disk(job_dir: Path) -> dict[str, Any]:
    """The contract: every file but the manifest, the contact sheets listed under `sheets` and
    `.varia*` files is listed in `outputs`, and decodes; each sheet is whole."""
    manifest = read_manifest(job_dir)
    listed = {entry["path"] for entry in manifest["outputs"]}
    sheets = {entry["path"] for entry in manifest.get("sheets", [])}
    assert not listed & sheets
    for entry in manifest.get("sheets", []):
        data = (job_dir / entry["path"]).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    listed |= sheets
    on_disk = {
        p.name
        for p in job_dir.iterdir()
        if p.name != MANIFEST_NAME
        and not p.name.startswith(".varia")
        and p.name not in manifest.get("foreign", [])
    }
    assert on_disk == listed, f"disk {sorted(on_disk)} != manifest {sorted(listed)}"
    for entry in manifest["outputs"]:
        path = job_dir / entry["path"]
        assert path.stat().st_size == entry["bytes"]
        duration = media.check_output(str(path), entry["duration_s"], 0.05)
        assert duration > 0
    for name in manifest["removed"]:
        assert not (job_dir / name).exists(), f"{name} listed as removed but still there"
    assert manifest["completed"] == len(manifest["outputs"])
    return manifest


def paced_ffmpeg(directory: Path) -> Path:
    """The real FFmpeg reading its input at native speed (`-re`): a render of an N-second clip
    lasts about N seconds, so a kill or cancel surely lands while FFmpeg runs."""
    script = directory / "ffmpeg-paced"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(Settings().ffmpeg_path())} -re "$@"\n')
    script.chmod(0o755)
    return script


def as_foreground_job() -> None:
    """`preexec_fn` for a child the test will Ctrl-C: SIGINT handled as in a terminal.

    A test run started in the background by a non-interactive shell inherits SIGINT ignored,
    and Python then never raises KeyboardInterrupt; a user's terminal is not like that.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def start_job(
    client: Client,
    task_queue: str,
    job_id: str,
    request: JobRequest | Mapping[str, Any],
    *,
    carry: JobCarry | None = None,
    **options: Any,
) -> WorkflowHandle[Any, JobResult]:
    """Start a `VariationJob` by its type name with a whole request (the contract's JSON as a
    dict, or a `JobRequest`), as any client may. `carry` starts it as a later run of a chain
    (the continue-as-new input); `options` go to `Client.start_workflow` as they are (e.g.
    `start_delay`, `id_reuse_policy`)."""
    args: list[Any] = [request] if carry is None else [request, carry]
    return await client.start_workflow(
        WORKFLOW_TYPE,
        args=args,
        id=job_id,
        task_queue=task_queue,
        result_type=JobResult,
        **options,
    )


async def run_job(
    client: Client, task_queue: str, job_id: str, request: JobRequest | Mapping[str, Any]
) -> JobResult:
    """`start_job`, then its result (raises `WorkflowFailureError` if the job failed)."""
    return await (await start_job(client, task_queue, job_id, request)).result()


async def start_by_name(
    client: Client,
    task_queue: str,
    job_id: str,
    inputs: list[Path] | list[str],
    variations: int,
    output_dir: Path | str,
    **fields: Any,
) -> WorkflowHandle[Any, JobResult]:
    """`start_job` with the request built from its required fields (`fields`: the optional
    request fields, e.g. `seed`, `concurrency`, `threads`)."""
    request = {
        "inputs": [str(path) for path in inputs],
        "variations": variations,
        "output_dir": str(output_dir),
        **fields,
    }
    return await start_job(client, task_queue, job_id, request)


async def render_heartbeats(client: Client, job_id: str) -> dict[str, RenderHeartbeat]:
    """The job's running renders' heartbeat details (through the client layer)."""
    return await Jobs(client, Settings()).heartbeats(job_id)


async def query_progress(handle: WorkflowHandle[Any, Any]) -> Progress:
    """The job's `progress` query (answers while it runs and after it closed)."""
    progress: Progress = await handle.query(names.PROGRESS_QUERY, result_type=Progress)
    return progress


async def communicate(
    proc: asyncio.subprocess.Process, timeout_s: float = 120
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a child; killed (by its own pid) if it outlives
    `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def failure_text(failure: WorkflowFailureError) -> str:
    """A failed job's cause chain in one line (`cause | its cause | ...`), for assertions."""
    err: BaseException | None = failure.cause
    parts = []
    while err is not None:
        parts.append(str(err))
        err = err.__cause__
    return " | ".join(parts)


def ui_api(url: str) -> dict[str, Any] | None:
    """The Web UI's API answer, or None while it is not ready (it connects after the server)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, ConnectionError):
        return None


async def wait_rendering(client: Client, job_id: str, at_least: int = 1) -> None:
    """Wait until `at_least` renders report FFmpeg progress in their heartbeats."""

    async def rendering() -> bool:
        beats = await render_heartbeats(client, job_id)
        return sum(1 for beat in beats.values() if beat.pid and beat.percent > 0) >= at_least

    await wait_for(rendering, timeout_s=60, what="FFmpeg to report progress")


@dataclass(frozen=True)
class Job:
    """One test's job: the dev server's client, the test's task queue (a worker polls it),
    its job id and output dir. The `job` and `paced_job` fixtures make one."""

    client: Client
    settings: Settings
    id: str
    out_dir: Path

    @property
    def task_queue(self) -> str:
        return self.settings.task_queue

    @property
    def dir(self) -> Path:
        """The job directory, `<output_dir>/<job id>`."""
        return self.out_dir / self.id

    def request(self, inputs: list[Path], variations: int, **fields: Any) -> dict[str, Any]:
        """The contract's JSON request into this test's output dir (`fields`: optional ones)."""
        return {
            "inputs": [str(path) for path in inputs],
            "variations": variations,
            "output_dir": str(self.out_dir),
            **fields,
        }

    async def start(
        self, inputs: list[Path], variations: int, **fields: Any
    ) -> WorkflowHandle[Any, JobResult]:
        """Start the job by its type name with the request built from the fields."""
        return await start_job(
            self.client, self.task_queue, self.id, self.request(inputs, variations, **fields)
        )

    async def run(self, inputs: list[Path], variations: int, **fields: Any) -> JobResult:
        """`start`, then its result (raises `WorkflowFailureError` if the job failed)."""
        return await (await self.start(inputs, variations, **fields)).result()

    async def start_rendering(
        self, inputs: list[Path], variations: int, *, at_least: int = 1, **fields: Any
    ) -> WorkflowHandle[Any, JobResult]:
        """`start`, then wait until `at_least` of its renders run FFmpeg."""
        handle = await self.start(inputs, variations, **fields)
        await wait_rendering(self.client, self.id, at_least)
        return handle


def render_task(
    source: MediaInfo, job_dir: Path, *, seed: int = 0, variation: int = 0, **fields: Any
) -> RenderTask:
    """The render task of one variation of `source` (input 0) as the workflow plans it, its
    recipe drawn from `seed`; `fields`: more task fields (e.g. `bounds`, `threads`)."""
    return RenderTask(
        job_dir=str(job_dir),
        input_index=0,
        variation=variation,
        media=source,
        recipe=make_recipe(seed, 0, variation),
        output_name=f"{Path(source.path).stem}_v{variation:03d}.mp4",
        seed=seed,
        **fields,
    )


def span_logging_ffmpeg(directory: Path, ffmpeg: str | None = None) -> tuple[Path, Path]:
    """`ffmpeg` (default: the real one) behind a script that logs when each run starts and
    ends, with its output path: `start|end <epoch s> <path>` lines (`ffmpeg_spans`)."""
    log, script = directory / "ffmpeg-spans.log", directory / "ffmpeg-spans"
    real = shlex.quote(ffmpeg or Settings().ffmpeg_path())
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do last="$arg"; done\n'
        f'echo "start $(date +%s.%N) $last" >> {shlex.quote(str(log))}\n'
        f'{real} "$@"\nstatus=$?\n'
        f'echo "end $(date +%s.%N) $last" >> {shlex.quote(str(log))}\n'
        'exit "$status"\n'
    )
    script.chmod(0o755)
    return script, log


def ffmpeg_spans(log: Path) -> dict[str, tuple[float, float]]:
    """{temporary output path: (start, end)} of each render's FFmpeg run that
    `span_logging_ffmpeg` logged."""
    starts: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for line in log.read_text().splitlines():
        kind, when, path = line.split(" ", 2)
        if not path.endswith(".part"):
            continue  # not a render (`ffmpeg -version` for the provenance record)
        path = path.removeprefix("file:")
        if kind == "start":
            starts[path] = float(when)
        else:
            spans[path] = (starts.pop(path), float(when))
    assert not starts, f"FFmpeg runs that never ended: {sorted(starts)}"
    return spans


def most_at_once(spans: Iterable[tuple[float, float]]) -> int:
    """The most spans that overlap at any moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    now = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most
