"""FFmpeg's process control: spawn it so it dies with its parent, stop it in bounded stages.

The graceful stop escalates `q` on stdin → SIGTERM → SIGKILL, each stage bounded, and also
reaches the helpers in FFmpeg's process group. Every signal goes to a process whose identity
(pid + create time, `varia.processes.ProcessIdentity`) was checked first, so a pid that now
belongs to another process is never touched. Generic process control (identity, the
parent-death signal, `terminate`) lives in `varia.processes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Literal

import psutil

from varia.processes import ProcessIdentity as ProcessIdentity  # also named here: activities
from varia.processes import dying_with_us

StopStage = Literal["exited", "q", "term", "kill", "stuck"]
"""The stage that ended a process: it had already exited, or `q`, SIGTERM or SIGKILL did;
`stuck`: it was still there a stage after SIGKILL (uninterruptible I/O), and we gave up."""

log = logging.getLogger("varia.ffmpeg")

DEFAULT_STAGE_TIMEOUT_S = 2.0


async def spawn(argv: list[str], *, niceness: int = 0) -> asyncio.subprocess.Process:
    """Start a child with stdin, stdout and stderr as pipes, in its own process group.

    On Linux the child is killed when this process dies (PR_SET_PDEATHSIG, see
    `varia.processes.dying_with_us`), so a worker that is SIGKILLed leaves no orphan.
    `niceness` lowers the child's CPU priority.
    """
    command, preexec = dying_with_us(argv)
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


def _group_exists(pgid: int) -> bool:
    """Whether any process (a zombie too) is in the process group `pgid`. A group id stays
    taken while the group has a member, so False means nothing of it is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    kill_timeout_s: float | None = None,
) -> StopStage:
    """Stop our own child: `q` on stdin, then SIGTERM, then SIGKILL; wait for it to exit.

    The `q` and SIGTERM stages each wait at most `stage_timeout_s`; the wait after SIGKILL
    at most `kill_timeout_s` (default: `stage_timeout_s`): a process stuck in uninterruptible
    I/O does not hang the caller (the stage is then `stuck`, logged). Whatever is left of
    its process group is killed at the end. Returns the stage that ended it.
    """
    stage: StopStage = "exited"
    if proc.returncode is None:
        kill_wait = stage_timeout_s if kill_timeout_s is None else kill_timeout_s
        stage = await _escalate(proc, identity, stage_timeout_s, kill_wait)
    kill_leftovers(identity)
    return stage


def kill_leftovers(leader: ProcessIdentity) -> None:
    """SIGKILL what is left of the leader's process group (helpers that outlived it)."""
    if not _group_exists(leader.pid):  # the usual case: skips a scan of every process
        return
    for member in _group_members(leader):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            member.kill()


async def _escalate(
    proc: asyncio.subprocess.Process,
    identity: ProcessIdentity,
    stage_timeout_s: float,
    kill_timeout_s: float,
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
    if await _wait_exit(proc, kill_timeout_s):
        return "kill"
    log.error(
        "pid %s did not exit %gs after SIGKILL (uninterruptible I/O?); giving up waiting",
        identity.pid,
        kill_timeout_s,
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
