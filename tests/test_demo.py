"""`varia demo` (what `make demo` runs): completes, stops everything it started, and leaves a
Web UI that still works: from a terminal it keeps the server up until Enter; otherwise it
prints the `varia server --db …` command that reopens the job's history."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.helpers import as_foreground_job, processes_mentioning, ui_api, wait_for
from varia.demo import start_server
from varia.models import JobResult
from varia.processes import ProcessIdentity
from varia.server import DatabaseInUse, free_port, lock_db
from varia.workflows import VariationJob

VARIA = str(Path(sys.executable).parent / "varia")


async def start_demo(
    tmp_path: Path, *args: str, stdin: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """`varia demo` with its data dir and temp files under `tmp_path` (stdin: /dev/null)."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    return await asyncio.create_subprocess_exec(
        VARIA,
        "demo",
        "--out",
        str(tmp_path / "demo"),
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        preexec_fn=as_foreground_job,
    )


def rendered_outputs(text: str) -> list[Path]:
    outputs = [Path(line.strip()) for line in text.splitlines() if line.strip().endswith(".mp4")]
    return [path for path in outputs if "_v00" in path.name]


async def test_demo_renders_and_prints_a_command_that_reopens_its_job(tmp_path: Path) -> None:
    demo = await start_demo(tmp_path, "-n", "2", "--seconds", "1")
    stdout, stderr = await demo.communicate()
    assert demo.returncode == 0, stderr.decode()
    text = stdout.decode()
    rendered = rendered_outputs(text)
    assert len(rendered) == 2 and all(path.is_absolute() and path.is_file() for path in rendered)
    assert "started eagerly in this process" in text  # its worker runs in the demo's process
    assert "no worker polls" not in text  # it waits for its own worker's first poll
    assert processes_mentioning(str(tmp_path)) == []  # server and FFmpeg are gone

    job_dir = str(rendered[0].parent)
    db = tmp_path / "data" / "varia" / "demo.db"
    [reopen] = [
        line.strip() for line in text.splitlines() if line.strip().startswith("varia server")
    ]
    assert shlex.split(reopen) == ["varia", "server", "--db", str(db)]
    [link] = re.findall(r"http://localhost:8233/namespaces/default/workflows/(\S+)", text)
    # Run exactly that command (on free ports: 7233 may be taken on a shared machine).
    port, ui_port = free_port(), free_port()
    server = await asyncio.create_subprocess_exec(
        VARIA,
        *shlex.split(reopen)[1:],
        *("--port", str(port), "--ui-port", str(ui_port)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    identity = ProcessIdentity.of(server.pid)
    try:
        assert server.stdout is not None
        await asyncio.wait_for(server.stdout.readline(), 60)  # "Temporal at …" once it is up
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
        handle = client.get_workflow_handle(link, result_type=JobResult)
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        result = await handle.result()  # no worker needed for these
        assert (result.state, result.completed, result.job_dir) == ("completed", 2, job_dir)
        # The Web UI serves it too (its API, at the UI's port, behind the printed link).
        url = f"http://127.0.0.1:{ui_port}/api/v1/namespaces/default/workflows/{link}"
        shown = await wait_for(
            lambda: asyncio.to_thread(ui_api, url), timeout_s=60, what="the Web UI to serve the job"
        )
        assert shown["workflowExecutionInfo"]["execution"]["workflowId"] == link
    finally:
        await stop(server, identity)
    assert processes_mentioning(str(tmp_path)) == []


async def stop(process: asyncio.subprocess.Process, identity: ProcessIdentity) -> None:
    """SIGTERM by pid (the server stops gracefully), SIGKILL if it lingers."""
    if process.returncode is None:
        identity.send(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            identity.send(signal.SIGKILL)
            await process.wait()


async def test_from_a_terminal_the_demo_keeps_its_web_ui_until_enter(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    demo = await start_demo(tmp_path, "-n", "1", "--seconds", "1", stdin=terminal)
    os.close(terminal)
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        while not any("Press Enter" in line for line in seen):
            line = await asyncio.wait_for(demo.stdout.readline(), 120)
            if not line:
                assert demo.stderr is not None
                err = (await asyncio.wait_for(demo.stderr.read(), 60)).decode()
                raise AssertionError(f"the demo ended without waiting: {''.join(seen)}{err}")
            seen.append(line.decode())
        text = "".join(seen)
        address = re.search(r"Temporal at (\S+),", text)
        job = re.search(r"job (\S+): http", text)
        assert address and job
        client = await Client.connect(address.group(1), data_converter=pydantic_data_converter)
        progress = await client.get_workflow_handle(job.group(1)).query(VariationJob.progress)
        assert (progress.state, progress.completed) == ("completed", 1)  # still served
        os.write(controller, b"\n")
        stdout, stderr = await asyncio.wait_for(demo.communicate(), 60)
    finally:
        os.close(controller)
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    assert demo.returncode == 0, stderr.decode()
    assert "varia server --db" in stdout.decode()
    assert processes_mentioning(str(tmp_path)) == []


async def test_ctrl_c_stops_server_worker_and_ffmpeg(tmp_path: Path) -> None:
    demo = await start_demo(tmp_path, "-n", "3", "--seconds", "20")
    try:
        await wait_for(
            lambda: any(
                "ffmpeg" in " ".join(p.info["cmdline"]) and ".part" in " ".join(p.info["cmdline"])
                for p in processes_mentioning(str(tmp_path / "demo"))
            ),
            timeout_s=90,
            what="the demo's FFmpeg to start rendering",
        )
        demo.send_signal(signal.SIGINT)
        _, stderr = await demo.communicate()
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    assert demo.returncode == 130, stderr.decode()
    assert "stopped" in stderr.decode()
    assert processes_mentioning(str(tmp_path)) == []


def test_one_server_per_database_file(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    held = lock_db(db)
    try:
        with pytest.raises(DatabaseInUse, match=r"x\.db is in use by another varia server"):
            lock_db(db)
    finally:
        os.close(held)
    os.close(lock_db(db))  # free again once the holder let go


async def test_a_demo_whose_database_is_in_use_keeps_its_history_in_a_new_file(
    tmp_path: Path,
) -> None:
    db = tmp_path / "demo.db"
    held = lock_db(db)  # as a running `varia server --db demo.db` would
    try:
        server = await start_server(db)
        try:
            assert server.db_path is not None and server.db_path != db
            assert server.db_path.parent == tmp_path and server.db_path.name.startswith("demo-")
        finally:
            server.stop()
    finally:
        os.close(held)
