"""Process control: spawn FFmpeg so it dies with its parent, and stop it in bounded stages.

The graceful stop escalates `q` on stdin → SIGTERM → SIGKILL, each stage bounded. Every signal
goes to a process whose identity (pid + create time) was checked first, so a pid that now
belongs to another process is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import psutil

StopStage = Literal["exited", "q", "term", "kill", "stuck"]
"""The stage that ended a process: it had already exited, or `q`, SIGTERM or SIGKILL did;
`stuck`: it was still there a stage after SIGKILL (uninterruptible I/O), and we gave up."""

log = logging.getLogger("varia.ffmpeg")

DEFAULT_STAGE_TIMEOUT_S = 2.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessIdentity:
    """A pid together with its create time: a pid alone can be reused by another process."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        """The identity of a live process; raises `psutil.NoSuchProcess` if it is gone."""
        return cls(pid, psutil.Process(pid).create_time())

    def process(self) -> psutil.Process | None:
        """The live process with this identity, or None if it exited or the pid was reused."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.01:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def is_alive(self) -> bool:
        """True while the very process this identity names is running."""
        return self.process() is not None

    def send(self, sig: int) -> bool:
        """Signal the process if, and only if, it is still the same one. True if sent."""
        proc = self.process()
        if proc is None:
            return False
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        return True


def death_signal_hook() -> Callable[[], None] | None:
    """A `preexec_fn` that asks Linux to SIGKILL the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, not in the child
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


@functools.cache
def _setpriv() -> str | None:
    """util-linux `setpriv`, which sets the parent-death signal and then execs the program."""
    return shutil.which("setpriv") if sys.platform.startswith("linux") else None


_PARENT_CHECK = 'test "$PPID" = "$0" && exec "$@"'
"""Run by `sh` after setpriv set the death signal: if this process's parent already died
(before the signal was armed), exit instead of starting the program."""


def _death_signal_prefix(setpriv: str) -> list[str]:
    """setpriv arms the death signal, then `sh` checks the parent is still us and execs."""
    return [setpriv, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _PARENT_CHECK, str(os.getpid())]


async def spawn(argv: list[str], *, niceness: int = 0) -> asyncio.subprocess.Process:
    """Start a child with stdin, stdout and stderr as pipes, in its own process group.

    On Linux the child is killed when this process dies (PR_SET_PDEATHSIG), so a worker
    that is SIGKILLed leaves no orphan. `niceness` lowers the child's CPU priority.

    The death signal is set by exec-ing through `setpriv --pdeathsig KILL` where it exists:
    without a `preexec_fn`, Python spawns with vfork, about 20 ms faster than fork() from a
    large worker. Elsewhere a `preexec_fn` sets it.
    """
    setpriv = _setpriv()
    preexec = None if setpriv else death_signal_hook()
    command = [*_death_signal_prefix(setpriv), *argv] if setpriv else argv
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
    )
    if niceness:
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, proc.pid, niceness)
    return proc


async def _wait_exit(proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for the child to exit; True if it did."""
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
    except TimeoutError:
        return False
    return True


def _group_members(leader: ProcessIdentity) -> list[psutil.Process]:
    """Live processes in the leader's process group started no earlier than the leader."""
    members = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if (
                os.getpgid(proc.pid) == leader.pid
                and proc.info["create_time"] >= leader.create_time - 0.01
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return members


def signal_group(leader: ProcessIdentity, sig: int) -> None:
    """Signal every live member of the leader's process group (helpers FFmpeg started too)."""
    leader.send(sig)
    for member in _group_members(leader):
        if member.pid != leader.pid:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                member.send_signal(sig)


async def stop_child(
    proc: asyncio.subprocess.Process,
    identity: ProcessIdentity,
    stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S,
) -> StopStage:
    """Stop our own child: `q` on stdin, then SIGTERM, then SIGKILL; wait for it to exit.

    Each stage waits at most `stage_timeout_s`, the wait after SIGKILL too: a process stuck
    in uninterruptible I/O does not hang the caller (the stage is then `stuck`, logged).
    Whatever is left of its process group is killed at the end. Returns the stage that ended
    it.
    """
    stage: StopStage = "exited"
    if proc.returncode is None:
        stage = await _escalate(proc, identity, stage_timeout_s)
    kill_leftovers(identity)
    return stage


def kill_leftovers(leader: ProcessIdentity) -> None:
    """SIGKILL what is left of the leader's process group (helpers that outlived it)."""
    for member in _group_members(leader):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            member.kill()


async def _escalate(
    proc: asyncio.subprocess.Process, identity: ProcessIdentity, stage_timeout_s: float
) -> StopStage:
    if proc.stdin is not None and not proc.stdin.is_closing():
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            proc.stdin.write(b"q")
            proc.stdin.close()
        if await _wait_exit(proc, stage_timeout_s):
            return "q"
    signal_group(identity, signal.SIGTERM)
    if await _wait_exit(proc, stage_timeout_s):
        return "term"
    signal_group(identity, signal.SIGKILL)
    if await _wait_exit(proc, stage_timeout_s):
        return "kill"
    log.error(
        "pid %s did not exit %gs after SIGKILL (uninterruptible I/O?); giving up waiting",
        identity.pid,
        stage_timeout_s,
    )
    return "stuck"


async def stop_foreign(
    identity: ProcessIdentity,
    *,
    must_contain: str,
    stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S,
) -> StopStage | None:
    """Stop a process that is not our child (say, FFmpeg of a crashed earlier attempt).

    Only a process with this exact pid *and* create time *and* `must_contain` in its command
    line is touched: SIGTERM, then SIGKILL. Returns None if no such process runs.
    """
    proc = identity.process()
    if proc is None:
        return None
    try:
        if not any(must_contain in arg for arg in proc.cmdline()):
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for sig, stage in ((signal.SIGTERM, "term"), (signal.SIGKILL, "kill")):
        if not identity.send(sig):
            return "exited"
        with contextlib.suppress(psutil.TimeoutExpired, psutil.NoSuchProcess):
            await asyncio.to_thread(proc.wait, stage_timeout_s)
        if not identity.is_alive():
            return stage  # type: ignore[return-value]
    return "kill"


def terminate(
    process: subprocess.Popen[bytes], identity: ProcessIdentity, timeout_s: float = 10.0
) -> None:
    """Stop a long-running child of ours (a server, a worker): SIGTERM, then SIGKILL.

    Signals go only to the process with this identity; returns once it has exited.
    """
    if process.poll() is not None:
        return
    identity.send(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        identity.send(signal.SIGKILL)
        process.wait()
