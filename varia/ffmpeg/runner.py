"""Run one FFmpeg to its end, or stop it: the loop the render activity is built on.

The loop wakes every tick whatever FFmpeg does, reports progress through `on_tick`, asks
`interrupt()` whether to stop (worker shutting down), and watches for a stall. A `stop` event
(a cancel pushed to this worker) wakes it at once, not at the next tick. It never uses
`asyncio.wait_for`, which can swallow a cancellation on Python 3.11: a `CancelledError` that
reaches any await stops FFmpeg by the three stages and is not re-raised: the run returns an
outcome with `cancelled` set, and the caller decides whether the cancellation stands (FFmpeg may
have finished while it was in flight). stdout and stderr are read concurrently, so FFmpeg can
never block on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psutil

from varia.despite_cancel import run_to_end
from varia.ffmpeg.process import (
    DEFAULT_STAGE_TIMEOUT_S,
    StopStage,
    kill_leftovers,
    spawn,
    stop_child,
)
from varia.ffmpeg.progress import ProgressParser, ProgressReport
from varia.processes import ProcessIdentity

TICK_S = 0.5
"""How often the loop wakes whatever FFmpeg does (progress steps, heartbeats, the worker's
shutdown, a stall). A cancel, a pushed stop and FFmpeg's exit wake it at once, so a longer tick
only delays a shutdown's stop; at 0.1 s the ticks cost the worker ~1.7 ms of CPU per
render-second."""
_STDERR_TAIL_BYTES = 4096


@dataclass(frozen=True)
class FfmpegOutcome:
    """How a run ended: its exit code, the end of stderr, and why it was stopped, if it was."""

    returncode: int
    stderr_tail: str
    stop_reason: str | None = None
    stop_stage: StopStage | None = None
    last_report: ProgressReport | None = None
    cancelled: bool = False


@dataclass
class _Watch:
    """What the readers saw so far."""

    report: ProgressReport | None = None
    last_advance: float = 0.0


async def _read_progress(stream: asyncio.StreamReader, watch: _Watch) -> None:
    parser = ProgressParser()
    while chunk := await stream.read(65536):
        for report in parser.feed(chunk):
            previous = watch.report
            if previous is None or (report.frame, report.out_time_s) != (
                previous.frame,
                previous.out_time_s,
            ):
                watch.last_advance = time.monotonic()
            watch.report = report


async def _read_stderr(stream: asyncio.StreamReader, tail: deque[bytes]) -> None:
    while chunk := await stream.read(65536):
        tail.append(chunk)
        while sum(len(part) for part in tail) > _STDERR_TAIL_BYTES and len(tail) > 1:
            tail.popleft()


def _identity(pid: int) -> ProcessIdentity:
    try:
        return ProcessIdentity.of(pid)
    except psutil.NoSuchProcess:  # already exited and reaped: nothing left to signal
        return ProcessIdentity(pid, -1.0)


async def run_ffmpeg(
    argv: list[str],
    *,
    on_tick: Callable[[ProgressReport | None, ProcessIdentity], None],
    interrupt: Callable[[], str | None] = lambda: None,
    stall_timeout_s: float = 60.0,
    stage_timeout_s: float = DEFAULT_STAGE_TIMEOUT_S,
    niceness: int = 0,
    tick_s: float = TICK_S,
    on_spawn: Callable[[ProcessIdentity], None] | None = None,
    stop: asyncio.Event | None = None,
    cancel_stage_timeout_s: Callable[[], float] | None = None,
) -> FfmpegOutcome:
    """Run FFmpeg; stop it on cancellation, when `stop` is set, on `interrupt()` or a stall.

    A cancellation or `stop` stops FFmpeg (waiting until it exited) and returns an outcome
    with `cancelled` set: the caller decides whether the output is whole anyway (FFmpeg
    finished while the cancel was in flight) or the cancellation stands. A stop for another
    reason returns an outcome whose `stop_reason` says why ("stalled" or what `interrupt()`
    said). Each stop stage waits `stage_timeout_s`, except that a cancellation or `stop`
    bounds the `q` and SIGTERM stages by `cancel_stage_timeout_s()`, asked when it arrives
    (the caller knows then whether the partial output will be deleted anyway).
    """
    proc = await spawn(argv, niceness=niceness)
    identity = _identity(proc.pid)
    if on_spawn is not None:
        on_spawn(identity)
    assert proc.stdout is not None and proc.stderr is not None
    watch = _Watch(last_advance=time.monotonic())
    tail: deque[bytes] = deque()
    readers = [
        asyncio.create_task(_read_progress(proc.stdout, watch)),
        asyncio.create_task(_read_stderr(proc.stderr, tail)),
    ]
    stop_reason: str | None = None
    stop_stage: StopStage | None = None
    cancelled = False

    def alive() -> None:
        on_tick(watch.report, identity)

    def cancel_stop() -> Awaitable[StopStage]:
        bound = stage_timeout_s if cancel_stage_timeout_s is None else cancel_stage_timeout_s()
        return stop_child(proc, identity, bound, kill_timeout_s=stage_timeout_s)

    last_check = time.monotonic()
    try:
        while proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick_s):
                    await _exit_or_stop(proc, stop)
            if stop is not None and stop.is_set() and proc.returncode is None:
                cancelled, stop_reason = True, "cancel pushed"
                stop_stage = await run_to_end(cancel_stop(), keep_alive=alive, tick_s=tick_s)
                break
            on_tick(watch.report, identity)
            if proc.returncode is not None:
                break
            stop_reason = interrupt()
            now = time.monotonic()
            if now - last_check > tick_s + stall_timeout_s / 2:
                watch.last_advance = now  # this worker was frozen, not FFmpeg: a new window
            last_check = now
            if stop_reason is None and now - watch.last_advance > stall_timeout_s:
                stop_reason = f"stalled: no progress for {stall_timeout_s:g}s"
            if stop_reason is not None:
                stop_stage = await run_to_end(
                    stop_child(proc, identity, stage_timeout_s), keep_alive=alive, tick_s=tick_s
                )
                break
        if stop_stage is None:  # it exited by itself: helpers it started must not outlive it
            kill_leftovers(identity)
        await _drain_readers(readers)
    except asyncio.CancelledError:
        cancelled = True
        stop_reason = "cancelled"
        stop_stage = await run_to_end(cancel_stop(), keep_alive=alive, tick_s=tick_s)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    returncode = proc.returncode if proc.returncode is not None else -1
    return FfmpegOutcome(
        returncode=returncode,
        stderr_tail=b"".join(tail).decode("utf-8", "replace").strip()[-_STDERR_TAIL_BYTES:],
        stop_reason=stop_reason,
        stop_stage=stop_stage,
        last_report=watch.report,
        cancelled=cancelled,
    )


async def _exit_or_stop(proc: asyncio.subprocess.Process, stop: asyncio.Event | None) -> None:
    """Return when FFmpeg exited or `stop` was set, whichever comes first."""
    if stop is None:
        await proc.wait()
        return
    waiters = [asyncio.ensure_future(proc.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _drain_readers(readers: list[asyncio.Task[None]]) -> None:
    """Let the readers drain what FFmpeg wrote before it exited (bounded)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            await asyncio.gather(*readers, return_exceptions=True)
