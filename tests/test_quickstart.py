"""The README's Quick start, run literally: its three shell blocks (server, worker, job) in
fresh shells where `varia` is not on the PATH until the block's own `. .venv/bin/activate`.

What stands in for the user: a directory with the clone's `.venv` (a symlink to the one
`make` built) and a generated clip as `my.mp4`; a fresh HOME (the server's database); and
`TEMPORAL_ADDRESS` on a free port, the setting the README gives for other ports (7233 may be
taken on a shared machine). Every process is stopped by pid at the end.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest_asyncio
from temporalio.client import Client

from tests.helpers import assert_manifest_matches_disk, processes_mentioning, ui_api, wait_for
from varia.clips import make_clip
from varia.processes import ProcessIdentity
from varia.recipes import default_seed

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- quickstart: (\w+) -->\s*\n\s*```sh\n(.*?)\n\s*```", re.S)


def quickstart_blocks() -> dict[str, str]:
    """The README's marked Quick-start blocks, by name, with the list indent removed."""
    text = (ROOT / "README.md").read_text()
    blocks = {}
    for name, body in BLOCK.findall(text):
        blocks[name] = "\n".join(line.strip() for line in body.splitlines())
    return blocks


def free_port_pair() -> int:
    """A port P with P and P + 1000 free (gRPC and the Web UI of `varia server`)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 1000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
        return port


def fresh_shell_env(home: Path, address: str) -> dict[str, str]:
    """A user's environment: no varia settings, no venv on the PATH, a fresh HOME."""
    venv_bins = {str(ROOT / ".venv" / "bin"), str(Path(sys.executable).parent)}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in venv_bins]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VARIA_", "TEMPORAL_", "XDG_")) and k != "VIRTUAL_ENV"
    }
    env.update(PATH=os.pathsep.join(path), HOME=str(home), TEMPORAL_ADDRESS=address)
    return env


class Terminal:
    """One block run by `bash -e -c` in the user's directory, its output in a file."""

    def __init__(self, name: str, script: str, cwd: Path, env: dict[str, str]) -> None:
        self.name, self.script, self.cwd, self.env = name, script, cwd, env
        self.log = cwd.parent / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Terminal:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                "bash",
                "-e",
                "-c",
                self.script,
                cwd=self.cwd,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self) -> None:
        """SIGTERM to the shell and everything it started, by pid; SIGKILL what lingers."""
        if self.process is None:
            return
        try:
            shell = psutil.Process(self.process.pid)
            family = [shell, *shell.children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        identities = []
        for proc in family:
            try:
                identities.append(ProcessIdentity.of(proc.pid))
            except psutil.NoSuchProcess:
                continue
        for identity in identities:
            identity.send(signal.SIGTERM)  # varia server/worker stop gracefully on SIGTERM
        descendants = [i for i in identities if i.pid != self.process.pid]  # asyncio reaps ours
        await asyncio.to_thread(wait_gone, descendants, 60)
        for identity in identities:
            identity.send(signal.SIGKILL)  # only if still alive (identity-checked)
        await self.process.wait()


def wait_gone(identities: list[ProcessIdentity], timeout_s: float) -> None:
    procs = [p for p in (identity.process() for identity in identities) if p is not None]
    psutil.wait_procs(procs, timeout=timeout_s)


@pytest_asyncio.fixture
async def terminals(tmp_path: Path) -> AsyncIterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in reversed(started):  # the worker, then the server
        await terminal.stop()
    assert processes_mentioning(str(tmp_path)) == []  # the dev server's database is in there


async def test_quick_start_as_written(tmp_path: Path, terminals: list[Terminal]) -> None:
    blocks = quickstart_blocks()
    assert set(blocks) == {"server", "worker", "job"}, "README Quick-start markers changed"
    assert (ROOT / ".venv" / "bin" / "activate").is_file(), "run `make .venv/.installed` first"
    user_dir = tmp_path / "clone"
    user_dir.mkdir()
    (user_dir / ".venv").symlink_to(ROOT / ".venv")
    make_clip(user_dir / "my.mp4", seconds=1, size="160x120")
    port = free_port_pair()
    address = f"127.0.0.1:{port}"
    env = fresh_shell_env(tmp_path / "home", address)
    (tmp_path / "home").mkdir()

    not_yet = await asyncio.create_subprocess_exec(
        "bash", "-c", "command -v varia", cwd=user_dir, env=env
    )
    assert await not_yet.wait() != 0, "varia is on the PATH before the README's activation"

    server = await Terminal("server", blocks["server"], user_dir, env).start()
    terminals.append(server)
    await wait_for(lambda: _answers(address), timeout_s=60, what=f"varia server on {address}")
    assert (tmp_path / "home" / ".local" / "share" / "varia" / "temporal.db").is_file()
    terminals.append(await Terminal("worker", blocks["worker"], user_dir, env).start())

    job = await Terminal("job", blocks["job"], user_dir, env).start()
    terminals.append(job)
    assert job.process is not None
    code = await asyncio.wait_for(job.process.wait(), 300)
    out = job.output()
    assert code == 0, out

    started = re.search(r"started job (\S+)", out)
    assert started, out
    job_id = started.group(1)
    seed = default_seed(job_id)
    assert f"seed:    {seed} (pass --seed {seed} to reproduce)" in out
    job_dir = user_dir / "out" / job_id
    assert f"completed: 5/5 done, outputs in {job_dir}" in out
    assert sorted(p.name for p in job_dir.glob("*.mp4")) == [f"my_v00{i}.mp4" for i in range(5)]
    manifest = assert_manifest_matches_disk(job_dir)
    assert (manifest["state"], manifest["seed"]) == ("completed", seed)

    worker_log = terminals[1].output()  # what the README says terminal 2 shows
    assert f"job {job_id} started: 5 variation(s) of 1 input(s)" in worker_log, worker_log
    assert worker_log.count(f"job {job_id}: my_v00") == 5
    assert f"job {job_id} completed: 5/5 done, 0 failed" in worker_log
    assert "Traceback" not in worker_log

    link = f"http://127.0.0.1:{port + 1000}/namespaces/default/workflows/{job_id}"
    assert link in out
    api = link.replace("/namespaces/", "/api/v1/namespaces/")
    shown = await wait_for(lambda: asyncio.to_thread(ui_api, api), what="the Web UI's answer")
    assert shown["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED"


async def _answers(address: str) -> bool:
    try:
        await Client.connect(address)
    except Exception:
        return False
    return True
