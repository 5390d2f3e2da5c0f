"""The `varia` CLI as a user runs it: real processes against the real dev server and FFmpeg."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rich.console import Console
from temporalio.api.taskqueue.v1 import PollerInfo
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from tests.conftest import Clips
from tests.helpers import (
    as_foreground_job,
    assert_manifest_matches_disk,
    communicate,
    processes_mentioning,
    render_heartbeats,
    start_by_name,
    wait_for,
)
from varia import names
from varia.cli.job_commands import absolute
from varia.cli.watch import follow
from varia.client.jobs import Jobs
from varia.client.pollers import LIVE_POLLER, has_workers, live_identities
from varia.client.records import JobStatus
from varia.client.status import ui_base_url, ui_link
from varia.config import Settings
from varia.processes import ProcessIdentity
from varia.server import free_port
from varia.worker import build_worker


@dataclass
class Run:
    """A finished `varia` process."""

    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        """Stdout holds exactly one JSON object and nothing else."""
        value = json.loads(self.out)
        assert isinstance(value, dict)
        return value

    def one_clear_line(self) -> str:
        """The error case: a single line on stderr, no traceback."""
        assert "Traceback" not in self.err, self.err
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, self.err
        return lines[0]


def cli_env(address: str, task_queue: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VARIA_", "TEMPORAL_"))}
    env |= {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "VARIA_TASK_QUEUE": task_queue,
        "COLUMNS": "200",
    }
    return env


async def spawn(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "varia",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        preexec_fn=as_foreground_job,
    )


async def finish(proc: asyncio.subprocess.Process, timeout_s: float = 120) -> Run:
    return Run(*await communicate(proc, timeout_s))


async def varia(env: dict[str, str], *args: str, cwd: Path | None = None) -> Run:
    return await finish(await spawn(env, *args, cwd=cwd))


async def first_stderr_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        return (await proc.stderr.readline()).decode()


@pytest.fixture
def env_vars(settings: Settings) -> dict[str, str]:
    return cli_env(settings.temporal_address, settings.task_queue)


def start_args(video: Path, n: int, out: Path, job_id: str, *extra: str) -> list[str]:
    return ["start", str(video), "-n", str(n), "-o", str(out), "--id", job_id, *extra]


async def start_long(
    client: Client, env: dict[str, str], clips: Clips, out: Path, job_id: str, n: int
) -> None:
    """Start a job on the long clip in-process (the CLI's own start is tested above)."""
    await start_by_name(client, env["VARIA_TASK_QUEUE"], job_id, [clips.long], n, out, threads=1)


async def wait_rendering(client: Client, job_id: str) -> None:
    async def rendering() -> bool:
        beats = await render_heartbeats(client, job_id)
        return any(beat.pid and beat.percent > 0 for beat in beats.values())

    await wait_for(rendering, timeout_s=60, what="FFmpeg to report progress")


async def test_start_watch_status_list(
    env_vars: dict[str, str], worker: Worker, clips: Clips, tmp_path: Path, job_id: str
) -> None:
    # relative inputs and output dir, made absolute by the CLI
    started = await varia(
        env_vars,
        *("start", clips.short.name, "-n", "2", "-o", "out", "--seed", "3"),
        *("--concurrency", "2", "--id", job_id, "--json"),
        cwd=clips.short.parent,
    )
    assert started.code == 0, started.err
    info = started.json()
    job_dir = clips.short.parent / "out" / job_id
    assert (info["job_id"], info["seed"], info["workers"]) == (job_id, 3, True)
    assert info["job_dir"] == str(job_dir)
    assert info["ui_url"].endswith(f"/namespaces/default/workflows/{job_id}")

    watched = await varia(env_vars, "watch", job_id, "--json")
    assert watched.code == 0, watched.err
    final = watched.json()
    assert (final["state"], final["completed"], final["total"]) == ("completed", 2, 2)

    status = await varia(env_vars, "status", job_id, "--json")
    assert status.code == 0, status.err
    record = status.json()
    assert (record["state"], record["outputs"], record["failed"]) == ("completed", 2, 0)
    assert record["job_dir"] == str(job_dir)
    assert record["manifest"] == str(job_dir / names.MANIFEST_NAME)
    assert record["started"] and record["closed_at"]
    assert_manifest_matches_disk(job_dir)

    human, listed, completed_only = await asyncio.gather(
        varia(env_vars, "status", job_id),
        varia(env_vars, "list", "--json", "--limit", "100"),
        varia(env_vars, "list", "--state", "completed", "--json", "--limit", "100"),
    )
    assert human.code == 0 and "completed" in human.out and str(job_dir) in human.out
    rows = {row["job_id"]: row for row in listed.json()["jobs"]}
    assert (rows[job_id]["state"], rows[job_id]["completed"], rows[job_id]["total"]) == (
        "completed",
        2,
        2,
    )
    starts = [row["started"] for row in listed.json()["jobs"]]
    assert starts == sorted(starts, reverse=True)
    assert job_id in {row["job_id"] for row in completed_only.json()["jobs"]}
    assert all(row["state"] == "completed" for row in completed_only.json()["jobs"])


async def test_start_watch_follows_to_the_end(
    env_vars: dict[str, str], worker: Worker, clips: Clips, out_dir: Path, job_id: str
) -> None:
    run = await varia(env_vars, *start_args(clips.silent, 1, out_dir, job_id, "--watch"))
    assert run.code == 0, run.err
    assert f"started job {job_id}" in run.out
    assert ui_link(ui_base_url(env_vars["TEMPORAL_ADDRESS"], None), "default", job_id) in run.out
    assert "completed: 1/1 done" in run.out


@pytest_asyncio.fixture
async def long_job(
    request: pytest.FixtureRequest,
    client: Client,
    env_vars: dict[str, str],
    paced_worker: Worker,
    clips: Clips,
    out_dir: Path,
    job_id: str,
) -> str:
    """A job of `request.param` (default 3) variations on the long clip, started on a paced
    worker: each render lasts the clip's 20 s, so a cancel, drain or Ctrl-C lands mid-job."""
    await start_long(client, env_vars, clips, out_dir, job_id, getattr(request, "param", 3))
    return job_id


@pytest_asyncio.fixture
async def rendering_job(client: Client, long_job: str) -> str:
    """A 3-variation job on the long clip whose first FFmpeg reports progress."""
    await wait_rendering(client, long_job)
    return long_job


async def test_cancel_mid_render_then_cancel_again(
    client: Client, env_vars: dict[str, str], out_dir: Path, rendering_job: str
) -> None:
    job_id = rendering_job
    job_dir = out_dir / job_id
    assert processes_mentioning(str(job_dir))

    cancelled = await varia(env_vars, "cancel", job_id, "--json")
    assert cancelled.code == 0, cancelled.err
    outcome = cancelled.json()
    assert (outcome["state"], outcome["requested"], outcome["already_closed"]) == (
        "cancelled",
        True,
        False,
    )
    assert outcome["total"] == 3 and outcome["closed_at"]
    assert processes_mentioning(str(job_dir)) == []
    manifest = assert_manifest_matches_disk(job_dir)
    assert manifest["state"] == "cancelled"
    kept = outcome["kept"]
    assert kept == len(manifest["outputs"]) < 3
    description = await client.get_workflow_handle(job_id).describe()
    assert description.status == WorkflowExecutionStatus.CANCELED

    again = await varia(env_vars, "cancel", job_id)
    assert again.code == 0, again.err
    assert f"already closed: cancelled ({kept} of 3 variations kept)" in again.out


async def test_drain_keeps_the_running_variation(
    env_vars: dict[str, str], out_dir: Path, rendering_job: str
) -> None:
    job_id = rendering_job
    drained = await varia(env_vars, "drain", job_id, "--json")
    assert drained.code == 0, drained.err
    outcome = drained.json()
    # the render running when the drain arrived finishes and is kept (a slow CLI start on a
    # busy machine may let one more begin first); the last never starts
    assert outcome["state"] == "drained" and 1 <= outcome["kept"] < 3, outcome
    manifest = assert_manifest_matches_disk(out_dir / job_id)
    assert (manifest["state"], len(manifest["outputs"])) == ("drained", outcome["kept"])
    again = await varia(env_vars, "drain", job_id)
    assert again.code == 0, again.err
    assert f"already closed: drained ({outcome['kept']} of 3 variations kept)" in again.out


async def test_cancel_of_a_job_no_worker_polls(
    client: Client, settings: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    lonely = settings.model_copy(update={"task_queue": f"{settings.task_queue}-later"})
    env = cli_env(settings.temporal_address, lonely.task_queue)
    await start_by_name(client, lonely.task_queue, job_id, [clips.short], 1, out_dir)

    requested = await varia(env, "cancel", job_id, "--no-wait", "--json")
    assert requested.code == 0, requested.err
    assert (requested.json()["requested"], requested.json()["waited"]) == (True, False)

    waiting = await spawn(env, "cancel", job_id)
    assert "no worker polls task queue" in await first_stderr_line(waiting)
    async with build_worker(client, lonely):
        run = await finish(waiting)
    assert run.code == 0, run.err
    assert "cancelled: 0 of 1 variations kept" in run.out
    description = await client.get_workflow_handle(job_id).describe()
    assert description.status == WorkflowExecutionStatus.CANCELED
    manifest = assert_manifest_matches_disk(out_dir / job_id)  # nothing had started
    assert (manifest["state"], manifest["outputs"], manifest["removed"]) == ("cancelled", [], [])
    # the worker is gone: its history says the job never began (it said "? of ? kept")
    again = await varia(env, "cancel", job_id)
    assert again.code == 0, again.err
    assert f"job {job_id} had already closed: cancelled (0 of 1 variations kept)" in again.out


async def test_pause_and_drain_of_a_job_no_worker_polls_wait_and_ctrl_c_says_so(
    client: Client, settings: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    """A pause or drain (an update) waits for a worker to take it, `--no-wait` too: it says
    so (it hung silently, found by an attacker's review), and Ctrl-C says it was not
    delivered (it ended in a WorkflowUpdateRPCTimeoutOrCancelledError traceback, exit 1)."""
    lonely = f"{settings.task_queue}-nobody"
    await start_by_name(client, lonely, job_id, [clips.short], 1, out_dir)
    env = cli_env(settings.temporal_address, lonely)
    pausing = await spawn(env, "pause", job_id)
    draining = await spawn(env, "drain", job_id, "--no-wait", "--json")
    try:
        for proc, action in ((pausing, "pause"), (draining, "drain")):
            line = await first_stderr_line(proc)
            assert "no worker polls task queue" in line, line
            assert f"waiting for one to take the {action} (an update is delivered only" in line
            proc.send_signal(signal.SIGINT)
            run = await finish(proc)
            assert run.code == 130 and "Traceback" not in run.err, run.err
            assert f"no worker took the {action} of {job_id}, so it was not delivered" in run.err
        assert run.json() == {"job_id": job_id, "action": "drain", "taken": False} | {
            "interrupted": True
        }
    finally:
        for proc in (pausing, draining):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await client.get_workflow_handle(job_id).terminate(reason="test: no worker ever came")


@pytest.mark.parametrize("long_job", [1], indirect=True)
async def test_watch_ctrl_c_detaches_without_cancelling(
    client: Client, env_vars: dict[str, str], long_job: str
) -> None:
    job_id = long_job
    watching = await spawn(env_vars, "watch", job_id)
    line = await first_stderr_line(watching)
    assert "Ctrl-C stops watching" in line, line or await finish(watching)  # '': it exited
    watching.send_signal(signal.SIGINT)
    run = await finish(watching)
    assert run.code == 130
    assert f"varia cancel {job_id}" in run.err and "Traceback" not in run.err
    handle = client.get_workflow_handle(job_id)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.cancel()
    await wait_for(lambda: _closed(client, job_id), what="the job to close after the test's cancel")


async def _closed(client: Client, job_id: str) -> bool:
    description = await client.get_workflow_handle(job_id).describe()
    return description.status != WorkflowExecutionStatus.RUNNING


async def test_live_view_shows_a_bar_per_running_variation(
    client: Client, settings: Settings, worker: Worker, clips: Clips, out_dir: Path, job_id: str
) -> None:
    await start_long(client, {"VARIA_TASK_QUEUE": settings.task_queue}, clips, out_dir, job_id, 2)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    watching = asyncio.create_task(follow(Jobs(client, settings), job_id, console, poll_s=0.2))
    await wait_for(
        lambda: (
            "fps" in screen.getvalue()
            and "ETA" in screen.getvalue()
            and "  long_clip_v000.mp4 " in screen.getvalue()
        ),
        what="a variation bar with fps and ETA",
    )
    await client.get_workflow_handle(job_id).cancel()
    async with asyncio.timeout(60):
        final = await watching
    assert final.state == "cancelled" and final.closed
    assert "running" in screen.getvalue() and "0/2 done" in screen.getvalue()


async def test_errors_give_one_line_and_their_exit_code(
    env_vars: dict[str, str], clips: Clips, out_dir: Path
) -> None:
    unreachable = cli_env(f"127.0.0.1:{free_port()}", "nobody")
    runs = await asyncio.gather(
        varia(env_vars, "status", "no-such-job"),
        varia(env_vars, "cancel", "no-such-job", "--json"),
        varia(unreachable, "status", "x"),
        varia(unreachable, "list", "--json"),
        varia(env_vars, "start", str(clips.short), "-o", str(out_dir)),  # no -n
        varia(env_vars, "list", "--state", "bogus"),
        varia(env_vars, "start", str(out_dir / "missing.mp4"), "-n", "1", "-o", str(out_dir)),
        varia(env_vars, "start", str(out_dir), "-n", "1", "-o", str(out_dir)),  # a directory
        varia(env_vars, "start", str(clips.short), "-n", "1", "-o", str(clips.short), "--json"),
        varia(env_vars, "start", str(clips.short), "-n", "1", "-o", str(clips.short / "sub")),
        varia(cli_env("nosuchhost.invalid:7233", "nobody"), "status", "x"),
    )
    not_found, not_found_json, down, down_json, no_n, bad_state, missing, directory = runs[:8]
    output_file, under_a_file, unknown_host = runs[8:]
    assert not_found.code == 3 and "no job 'no-such-job'" in not_found.one_clear_line()
    assert not_found.out == ""
    assert not_found_json.code == 3 and not_found_json.json()["exit_code"] == 3
    for run in (down, down_json):
        assert run.code == 4, run.err
        assert "cannot reach Temporal at 127.0.0.1:" in run.one_clear_line()
    assert down_json.json()["exit_code"] == 4
    assert no_n.code == 2 and "Traceback" not in no_n.err
    assert bad_state.code == 2 and "unknown state 'bogus'" in bad_state.one_clear_line()
    assert missing.code == 2 and "input not found" in missing.one_clear_line()
    assert directory.code == 2 and "not a regular file" in directory.one_clear_line()
    # an output dir that is a file (or under one) is refused here, not by the job later
    assert output_file.code == 2 and output_file.json()["exit_code"] == 2
    assert output_file.one_clear_line() == (
        f"varia: output dir exists and is not a directory: {clips.short}"
    )
    assert under_a_file.code == 2
    assert f"{clips.short} is not a directory" in under_a_file.one_clear_line()
    # the system's whole reason ("… Name or service not known"; it was cut to "name or service")
    with pytest.raises(socket.gaierror) as lookup:
        socket.getaddrinfo("nosuchhost.invalid", 7233)
    assert unknown_host.code == 4
    assert unknown_host.one_clear_line() == (
        "varia: cannot reach Temporal at nosuchhost.invalid:7233: failed to lookup address "
        f"information: {lookup.value.strerror}"
    )


async def test_a_namespace_the_server_lacks_is_one_line_and_exit_2(
    env_vars: dict[str, str],
) -> None:
    """The worker checks its namespace at start (it said it polled, then died 2 s later with a
    CancelledError traceback, exit 1); the other commands name it the same way."""
    namespace = f"nope-{env_vars['VARIA_TASK_QUEUE']}"
    env = env_vars | {"TEMPORAL_NAMESPACE": namespace}
    worker, worker_json, status, janitor = await asyncio.gather(
        varia(env, "worker"),
        varia(env, "worker", "--json"),
        varia(env, "status", "x"),
        varia(env, "janitor"),
    )
    for run in (worker, worker_json, status, janitor):
        assert run.code == 2, run.err
        line = run.one_clear_line()
        assert f"namespace '{namespace}' (TEMPORAL_NAMESPACE) does not exist" in line, line
        assert f"temporal operator namespace create --namespace {namespace}" in line, line
    assert worker_json.json()["exit_code"] == 2 and worker.out == ""


async def test_a_worker_with_an_ffmpeg_that_is_not_there_does_not_start(
    env_vars: dict[str, str], tmp_path: Path
) -> None:
    """It used to start and fail every render in an instant, taking the retries of every job
    from the healthy workers (found by review)."""
    text = tmp_path / "not-a-binary"
    text.write_text("just text\n")
    missing, not_executable = await asyncio.gather(
        varia(env_vars | {"VARIA_FFMPEG": "/nonexistent/ffmpeg"}, "worker"),
        varia(env_vars | {"VARIA_FFMPEG": str(text)}, "worker", "--json"),
    )
    assert missing.code == 2 and missing.one_clear_line() == (
        "varia: bad setting: VARIA_FFMPEG='/nonexistent/ffmpeg': '/nonexistent/ffmpeg' does not "
        "exist; point VARIA_FFMPEG at an FFmpeg binary"
    )
    assert not_executable.code == 2 and not_executable.json()["exit_code"] == 2
    assert "is not an executable file" in not_executable.one_clear_line()


async def test_worker_and_server_json(settings: Settings, tmp_path: Path) -> None:
    env = cli_env(settings.temporal_address, f"{settings.task_queue}-proc")
    worker_proc = await spawn(env, "worker", "--json")
    server_proc = await spawn(
        env,
        "server",
        "--port",
        str(free_port()),
        "--ui-port",
        str(free_port()),
        "--db",
        str(tmp_path / "t.db"),
        "--json",
    )
    try:
        assert server_proc.stdout is not None
        async with asyncio.timeout(60):
            line = await server_proc.stdout.readline()
        up = json.loads(line)
        assert up["address"].startswith("127.0.0.1:") and up["ui_url"].startswith("http://")
        dev_server = ProcessIdentity.of(up["pid"])
        own = await Client.connect(up["address"])  # the janitor schedule was created
        schedule = own.get_schedule_handle(f"varia-janitor-{env['VARIA_TASK_QUEUE']}")
        assert (await schedule.describe()).schedule.spec.intervals
        server_proc.send_signal(signal.SIGTERM)  # a service manager's stop: graceful too
        server_run = await finish(server_proc)
        assert server_run.code == 0, server_run.err
        assert server_run.out == ""  # the one object was the first and only line
        assert not dev_server.is_alive()

        assert worker_proc.stderr is not None
        await wait_for(lambda: _polls(settings, env["VARIA_TASK_QUEUE"]), what="the worker to poll")
        swept = await finish(await spawn(env, "janitor", "--json"))  # one sweep, on the worker
        assert swept.code == 0, swept.err
        assert {"examined", "swept", "skipped", "already_clean"} <= set(swept.json())
        worker_proc.send_signal(signal.SIGTERM)
        worker_run = await finish(worker_proc)
        assert worker_run.code == 0, worker_run.err
        assert worker_run.json() == {"stopped": True, "task_queue": env["VARIA_TASK_QUEUE"]}
    finally:
        for proc in (worker_proc, server_proc):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _polls(settings: Settings, task_queue: str) -> bool:
    return await has_workers((await Jobs.open(settings)).client, task_queue)


async def test_a_stopped_workers_pollers_stop_counting_after_one_long_poll(
    client: Client, settings: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    """The server lists a stopped worker's pollers for 5 minutes: `start --watch` said
    `running: ?/? done` with `"workers": true` and no hint all that time."""
    queue = f"{settings.task_queue}-stopped"
    env = cli_env(settings.temporal_address, queue)
    worker_proc = await spawn(env, "worker")
    try:
        await wait_for(lambda: _polls(settings, queue), what="the worker to poll")
        worker_proc.send_signal(signal.SIGTERM)
        assert (await finish(worker_proc)).code == 0
    finally:
        if worker_proc.returncode is None:
            worker_proc.kill()
            await worker_proc.wait()
    handle = await start_by_name(client, queue, job_id, [clips.short], 1, out_dir)
    jobs = Jobs(client, settings)

    async def hinted() -> JobStatus | None:
        status = await jobs.status(job_id)
        return status if status.hint else None

    deadline = (LIVE_POLLER + timedelta(seconds=45)).total_seconds()
    status = await wait_for(hinted, timeout_s=deadline, poll_s=1, what="the no-worker hint")
    assert status.workers is False and f"no worker polls task queue '{queue}'" in status.hint
    shown = (await varia(env, "status", job_id, "--json")).json()
    assert (shown["workers"], shown["hint"]) == (False, status.hint)
    await handle.terminate("test cleanup")


def test_a_poller_counts_while_its_last_poll_is_within_one_long_poll() -> None:
    now = datetime.now(UTC)

    def seen(identity: str, ago: timedelta | None) -> PollerInfo:
        poller = PollerInfo(identity=identity)
        if ago is not None:
            poller.last_access_time.FromDatetime(now - ago)
        return poller

    pollers = [
        seen("polling", timedelta(seconds=2)),
        seen("idle", LIVE_POLLER - timedelta(seconds=1)),  # a long poll about to end
        seen("stopped", LIVE_POLLER + timedelta(seconds=1)),
        seen("unstamped", None),
    ]
    assert live_identities(pollers, now) == {"polling", "idle", "unstamped"}


async def test_usage_errors_help_and_version(env_vars: dict[str, str], clips: Clips) -> None:
    zero, unknown, threads, start_help, version = await asyncio.gather(
        varia(env_vars, "start", str(clips.short), "-n", "0", "-o", "out", "--json"),
        varia(env_vars, "status", "x", "--bogus", "--json"),
        varia(env_vars, *start_args(clips.short, 1, Path("out"), "t", "--threads", "2" * 20)),
        varia(env_vars, "start", "--help"),
        varia(env_vars, "--version"),
    )
    for run in (zero, unknown, threads):
        assert run.code == 2, run.out + run.err
    for run in (zero, unknown):
        assert run.json()["exit_code"] == 2, run.out + run.err
    assert "--variations" in zero.json()["error"] and "--bogus" in unknown.json()["error"]
    assert "--threads" in threads.err and "256" in threads.err
    assert start_help.code == 0
    assert "INPUTS..." in start_help.out and "{inputs}" not in start_help.out
    assert "<bool>" not in start_help.out and "<list" not in start_help.out
    assert "varia server" in start_help.out and "varia worker" in start_help.out
    assert version.code == 0 and version.out.startswith("varia ")


async def test_server_on_a_busy_port_names_it_and_exits_4(env_vars: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        human, as_json = await asyncio.gather(
            varia(env_vars, "server", "--port", str(port), "--ui-port", str(free_port())),
            varia(env_vars, "server", "--port", str(port), "--json"),
        )
    assert human.code == 4 and as_json.code == 4
    line = human.one_clear_line()
    assert f"127.0.0.1:{port}" in line and "bind: address already in use" in line
    assert human.out == ""
    error = as_json.json()
    assert "pid" not in error and "address already in use" in error["error"]


async def test_no_worker_start_status_and_watch_say_so(
    client: Client, settings: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    lonely = f"{settings.task_queue}-nobody"
    env = cli_env(settings.temporal_address, lonely)
    started, started_json = await asyncio.gather(
        varia(env, *start_args(clips.short, 1, out_dir, f"{job_id}-a")),
        varia(env, *start_args(clips.short, 1, out_dir, f"{job_id}-b"), "--json"),
    )
    assert started.code == 0 and f"no worker polls task queue '{lonely}'" in started.err
    assert "starts when one does" in started.err and f"{job_id}-a" in started.out
    assert started_json.code == 0 and started_json.json()["workers"] is False
    for other in ("a", "b"):
        await client.get_workflow_handle(f"{job_id}-{other}").terminate("test cleanup")
    handle = await start_by_name(client, lonely, job_id, [clips.short], 1, out_dir)
    status = await varia(env, "status", job_id)
    assert f"no worker polls task queue '{lonely}'" in status.out
    watching = await spawn(env, "watch", job_id)  # stdout is a pipe: plain lines
    assert watching.stdout is not None
    async with asyncio.timeout(60):
        line = (await watching.stdout.readline()).decode()
    assert "no worker polls task queue" in line and "varia worker" in line
    await handle.terminate("test cleanup")
    run = await finish(watching)
    assert run.code == 1 and "terminated" in run.out


async def test_piped_status_and_list_never_cut_or_wrap_links_ids_or_dates(
    client: Client, settings: Settings, clips: Clips, out_dir: Path, job_id: str
) -> None:
    """Piped, `varia status` cut the Web UI link at 80 columns (`…/workflows/varia-2026…`)
    and `varia list` wrapped its dates."""
    long_id = f"{job_id}-{'x' * 50}"
    lonely = f"{settings.task_queue}-nobody"
    handle = await start_by_name(client, lonely, long_id, [clips.short], 1, out_dir)
    env = cli_env(settings.temporal_address, lonely) | {"COLUMNS": "80"}
    try:
        status, listed = await asyncio.gather(
            varia(env, "status", long_id), varia(env, "list", "--limit", "20")
        )
    finally:
        await handle.terminate("test cleanup")
    link = ui_link(ui_base_url(settings.temporal_address, None), "default", long_id)
    assert status.code == 0 and listed.code == 0, status.err + listed.err
    [web_ui] = [line for line in status.out.splitlines() if line.startswith("Web UI")]
    assert web_ui.split() == ["Web", "UI", link], status.out
    [row] = [line for line in listed.out.splitlines() if long_id in line]
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", row), listed.out


@pytest.mark.parametrize("long_job", [4], indirect=True)
async def test_watch_piped_prints_plain_progress_lines_and_closed_jobs_read_closed(
    client: Client, env_vars: dict[str, str], long_job: str
) -> None:
    job_id = long_job
    watching = await spawn(env_vars, "watch", job_id)
    assert watching.stdout is not None
    lines = []
    async with asyncio.timeout(120):
        while len(lines) < 2:  # the second line comes while the job still runs
            lines.append((await watching.stdout.readline()).decode())
    assert all("done" in line for line in lines), lines
    assert (await client.get_workflow_handle(job_id).describe()).status == (
        WorkflowExecutionStatus.RUNNING
    )
    await varia(env_vars, "cancel", job_id)
    await finish(watching)
    status, listed, watched = await asyncio.gather(
        varia(env_vars, "status", job_id, "--json"),
        varia(env_vars, "list", "--json", "--limit", "100"),
        varia(env_vars, "watch", job_id),
    )
    record = status.json()
    [row] = [r for r in listed.json()["jobs"] if r["job_id"] == job_id]
    same = ("state", "total", "completed", "failed", "outputs", "job_dir", "manifest")
    assert {k: row[k] for k in same} == {k: record[k] for k in same}
    assert record["state"] in ("cancelled", "completed") and record["manifest"]
    human = await varia(env_vars, "status", job_id)
    assert "cancel requested" not in human.out and record["state"] in human.out
    assert "runs on" not in watched.err and record["state"] in watched.out


_PARTS = st.lists(st.sampled_from(["sl", "..", ".", "real", "sub", "clip.mp4", ""]), max_size=6)


@hypothesis_settings(max_examples=200, deadline=None)
@given(parts=_PARTS)
def test_start_makes_a_path_absolute_as_the_shell_means_it(parts: list[str], tree: Path) -> None:
    """`varia start`'s absolute path names the file the relative one names, `..` after a
    symlink included (collapsed as text, `sl/../clip.mp4` named another clip)."""
    relative = "/".join(parts) or "."
    here = os.getcwd()
    os.chdir(tree)
    try:
        made = absolute(relative)
        assert os.path.isabs(made)
        try:
            expected = os.stat(relative)
        except OSError:
            assert not os.path.exists(made)
            return
        assert os.path.samestat(os.stat(made), expected), (relative, made)
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip.mp4 and real/clip.mp4 (other files), real/sub, and sl -> real/sub."""
    root = tmp_path_factory.mktemp("tree")
    (root / "real" / "sub").mkdir(parents=True)
    (root / "clip.mp4").write_bytes(b"top")
    (root / "real" / "clip.mp4").write_bytes(b"real")
    (root / "sl").symlink_to("real/sub")
    return root
