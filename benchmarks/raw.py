"""The independent baseline: capture a job's exact FFmpeg argv, run it by hand, account CPU.

- `ArgvRecorder` writes a tiny shell wrapper to use as `VARIA_FFMPEG` in a *capture* worker:
  it saves its argv (one file per FFmpeg, NUL-separated) and then execs the real FFmpeg. Only
  the untimed capture run goes through it, so its cost is never in a timed figure.
- `run_by_hand` runs argv lists in a pool of threads of a given width, each FFmpeg a plain
  `subprocess.Popen` (no varia code on the path) reaped with `os.wait4` for its CPU time.
- `cpu_seconds` reads a live process's own and reaped-children CPU time (psutil).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ArgvRecorder:
    """A directory with an FFmpeg wrapper that records the argv of every run."""

    directory: Path
    real_ffmpeg: str

    @property
    def wrapper(self) -> Path:
        """The executable to set as `VARIA_FFMPEG`."""
        return self.directory / "ffmpeg-recorder"

    def install(self) -> ArgvRecorder:
        """Write the wrapper script; returns self."""
        self.directory.mkdir(parents=True, exist_ok=True)
        logs = shlex.quote(str(self.directory))
        self.wrapper.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\0' \"$@\" > {logs}/argv-$$.tmp && mv {logs}/argv-$$.tmp {logs}/argv-$$\n"
            f'exec {shlex.quote(self.real_ffmpeg)} "$@"\n'
        )
        self.wrapper.chmod(0o755)
        return self

    def take(self) -> list[list[str]]:
        """Every argv recorded since the last `take` (argv[0] is the real FFmpeg); clears them."""
        argvs = []
        for path in sorted(self.directory.glob("argv-*")):
            if path.suffix == ".tmp":
                continue
            args = path.read_bytes().split(b"\0")[:-1]
            argvs.append([self.real_ffmpeg, *(arg.decode() for arg in args)])
            path.unlink()
        return argvs


@dataclass(frozen=True)
class RawRun:
    """One FFmpeg run by hand: wall seconds (spawn → reaped) and CPU seconds (user + sys)."""

    wall_s: float
    cpu_s: float


def _run_one(argv: list[str]) -> RawRun:
    with tempfile.TemporaryFile() as errors:
        started = time.monotonic()
        # stdin stays an open, silent pipe as under varia (FFmpeg polls it for `q`)
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.stdin is not None
        proc.stdin.close()
        if proc.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode("utf-8", "replace")[-300:]
            raise RuntimeError(f"FFmpeg failed ({proc.returncode}): {tail}")
    return RawRun(wall, usage.ru_utime + usage.ru_stime)


def run_by_hand(argvs: list[list[str]], width: int) -> tuple[float, list[RawRun]]:
    """Run every argv, at most `width` at once, in the given order.

    Returns the wall time from the first spawn to the last exit and each run (argv order).
    """
    for argv in argvs:
        Path(argv[-1].removeprefix("file:")).parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="raw-ffmpeg") as pool:
        started = time.monotonic()
        runs = list(pool.map(_run_one, argvs))
        return time.monotonic() - started, runs


def retarget(argv: list[str], old_dir: Path, new_dir: Path) -> list[str]:
    """The argv with its output (the last item, a `file:` URL) moved from `old_dir` to `new_dir`."""
    prefix = f"file:{old_dir.absolute()}/"
    if not argv[-1].startswith(prefix):
        raise ValueError(f"output {argv[-1]!r} is not in {old_dir}")
    return [*argv[:-1], f"file:{new_dir.absolute()}/{argv[-1].removeprefix(prefix)}"]


@dataclass(frozen=True)
class CpuTimes:
    """A process's CPU seconds so far: its own, and that of its reaped children."""

    own_s: float
    children_s: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.own_s - other.own_s, self.children_s - other.children_s)


def cpu_seconds(pid: int) -> CpuTimes:
    """The CPU times of a live process (user + system)."""
    times = psutil.Process(pid).cpu_times()
    return CpuTimes(times.user + times.system, times.children_user + times.children_system)
