"""Generic process control (`varia.processes`): identity checks and `terminate` by pid."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from varia.processes import ProcessIdentity, death_signal_hook, dying_with_us, terminate

IGNORES_TERM = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(600)
    """
)


def _start(code: str) -> tuple[subprocess.Popen[bytes], ProcessIdentity]:
    command, preexec = dying_with_us([sys.executable, "-c", code])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, preexec_fn=preexec)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc, ProcessIdentity.of(proc.pid)


def test_terminate_stops_a_child_with_sigterm() -> None:
    proc, identity = _start('print("ready", flush=True)\nimport time\ntime.sleep(600)')
    terminate(proc, identity, timeout_s=30)
    assert proc.returncode == -signal.SIGTERM and not identity.is_alive()


def test_terminate_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    proc, identity = _start(IGNORES_TERM)
    terminate(proc, identity, timeout_s=0.5)
    assert proc.returncode == -signal.SIGKILL and not identity.is_alive()


def test_terminate_leaves_a_reused_pid_alone() -> None:
    """An identity whose create time does not match (the pid was reused) is never signalled."""
    proc, identity = _start(IGNORES_TERM)
    try:
        stale = ProcessIdentity(identity.pid, identity.create_time - 5.0)
        assert not stale.is_alive() and not stale.send(signal.SIGKILL)
        assert proc.poll() is None and identity.is_alive()
    finally:
        terminate(proc, identity, timeout_s=0.5)


def test_terminate_of_an_exited_child_returns_at_once() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = ProcessIdentity(proc.pid, 0.0)
    proc.wait()
    terminate(proc, identity)
    assert proc.returncode == 0


def test_the_death_signal_hook_is_linux_only() -> None:
    assert (death_signal_hook() is not None) == sys.platform.startswith("linux")
