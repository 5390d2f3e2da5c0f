"""Process control: the three-stage stop, identity checks, death with the parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.helpers import wait_for
from varia.ffmpeg.process import spawn, stop_child, stop_foreign
from varia.processes import ProcessIdentity

STUBBORN = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("ready", flush=True)
    while True:
        sys.stdin.read(1)  # reads 'q' and carries on
        time.sleep(0.01)
    """
)

POLITE = textwrap.dedent(
    """
    import sys
    print("ready", flush=True)
    if sys.stdin.read(1) == "q":
        sys.exit(0)
    """
)

TERM_ONLY = textwrap.dedent(
    """
    import time
    print("ready", flush=True)
    while True:
        time.sleep(0.05)  # stdin never read: 'q' does nothing, SIGTERM ends it
    """
)


async def started(code: str) -> tuple[asyncio.subprocess.Process, ProcessIdentity]:
    proc = await spawn([sys.executable, "-c", code])
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"
    return proc, ProcessIdentity.of(proc.pid)


async def test_q_on_stdin_is_the_first_stage() -> None:
    proc, identity = await started(POLITE)
    assert await stop_child(proc, identity, stage_timeout_s=5) == "q"
    assert proc.returncode == 0


async def test_sigterm_when_q_is_ignored() -> None:
    proc, identity = await started(TERM_ONLY)
    assert await stop_child(proc, identity, stage_timeout_s=0.5) == "term"
    assert proc.returncode == -signal.SIGTERM


async def test_sigkill_when_q_and_sigterm_are_ignored() -> None:
    proc, identity = await started(STUBBORN)
    assert await stop_child(proc, identity, stage_timeout_s=0.3) == "kill"
    assert proc.returncode == -signal.SIGKILL
    assert not identity.is_alive()


async def test_already_exited_child_is_not_signalled() -> None:
    proc = await spawn([sys.executable, "-c", "pass"])
    identity = ProcessIdentity(proc.pid, 0.0)
    await proc.wait()
    assert await stop_child(proc, identity) == "exited"


async def test_helpers_in_the_process_group_are_stopped_too() -> None:
    code = textwrap.dedent(
        """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(child.pid, flush=True)
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    proc = await spawn([sys.executable, "-c", code])
    assert proc.stdout is not None
    helper_pid = int(await proc.stdout.readline())
    assert await proc.stdout.readline() == b"ready\n"
    helper = ProcessIdentity.of(helper_pid)
    await stop_child(proc, ProcessIdentity.of(proc.pid), stage_timeout_s=0.5)
    await wait_for(lambda: not helper.is_alive(), timeout_s=10, what="helper to die")


def sleeper() -> subprocess.Popen[bytes]:
    """A child sleeping for 10 minutes, returned once its command line is visible."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    asyncio.run(
        wait_for(
            lambda: "time.sleep(600)" in " ".join(psutil.Process(victim.pid).cmdline()),
            timeout_s=10,
            what="the child's command line",
        )
    )
    return victim


def test_wrong_create_time_is_never_signalled() -> None:
    victim = sleeper()
    try:
        real = ProcessIdentity.of(victim.pid)
        impostor = ProcessIdentity(victim.pid, real.create_time - 100.0)
        assert impostor.process() is None
        assert impostor.send(signal.SIGKILL) is False
        assert asyncio.run(stop_foreign(impostor, must_contain="sleep")) is None
        assert victim.poll() is None and real.is_alive()
    finally:
        victim.kill()
        victim.wait()


def test_foreign_process_needs_a_matching_command_line() -> None:
    victim = sleeper()
    try:
        identity = ProcessIdentity.of(victim.pid)
        assert asyncio.run(stop_foreign(identity, must_contain="/not/this/output")) is None
        assert victim.poll() is None
        assert asyncio.run(stop_foreign(identity, must_contain="sleep(600)")) == "term"
        assert not identity.is_alive()  # (psutil reaped our own child, so no exit code here)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
@pytest.mark.parametrize("via", ["setpriv", "preexec_fn"])
def test_child_dies_with_its_parent(tmp_path: Path, via: str) -> None:
    """A parent SIGKILLed (like a worker) takes the FFmpeg it spawned with it."""
    patch = "processes._setpriv = lambda: None" if via == "preexec_fn" else ""
    code = textwrap.dedent(
        f"""
        import asyncio, sys, time
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from varia import processes
        from varia.ffmpeg.process import spawn
        {patch}
        async def main():
            proc = await spawn([sys.executable, "-c", "import time; time.sleep(600)"])
            print(proc.pid, flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = ProcessIdentity.of(int(parent.stdout.readline()))
        parent.kill()
        parent.wait()
        asyncio.run(wait_for(lambda: not child.is_alive(), timeout_s=10, what="orphan to die"))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if psutil.pid_exists(child.pid) and child.is_alive():
            os.kill(child.pid, signal.SIGKILL)


class _NeverExits:
    """Stands for a child stuck in uninterruptible I/O: it never exits, even after SIGKILL."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode, self.stdin = pid, None, None
        self.waited = 0

    async def wait(self) -> int:
        self.waited += 1
        await asyncio.Event().wait()
        return -9


async def test_wait_after_sigkill_is_bounded_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone, identity = await started(POLITE)
    assert gone.stdin is not None
    gone.stdin.write(b"q")
    await gone.wait()  # signals to this identity now go nowhere: nothing real is touched
    stuck = _NeverExits(gone.pid)
    stage = await stop_child(stuck, identity, stage_timeout_s=0.05)  # type: ignore[arg-type]
    assert stage == "stuck"
    assert stuck.waited == 2  # after SIGTERM, and after SIGKILL: each wait bounded
    assert "did not exit" in caplog.text and "after SIGKILL" in caplog.text
