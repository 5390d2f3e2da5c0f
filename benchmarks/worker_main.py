"""`python -m benchmarks.worker_main`: `varia worker`, instrumented for the benchmarks.

Optional environment knobs, read at start:
- `BENCH_HEARTBEAT_CAP_S` overrides the worker's heartbeat throttle cap (the throttle sweep);
- `BENCH_STATS_PERIOD_S` overrides FFmpeg's `-stats_period` (it bounds how fast `q` acts);
- `BENCH_STOP_LOG` names a file that gets one JSON line per FFmpeg stop (wall-clock begin, when
  `q` is written, and end, when FFmpeg was reaped, and the stage that ended it) and one per
  pushed stop received (`pushed`: the wall-clock time `stop_renders` set the renders' stop
  events), so a cancel's latency splits into its steps, and one per quality measurement and
  per decoding of an output's samples (its thread's CPU seconds: a feature's work, reported
  apart from orchestration);
- `BENCH_NO_QUALITY=1` skips measuring each output's quality (a feature's work, not
  orchestration), to split the worker's CPU;
- `BENCH_PROFILE` names a file that gets the worker's cProfile statistics when it exits (the
  main thread's CPU time: the event loop, where activities and the SDK's bridge run);
- `BENCH_MALLINFO` names a file that gets one JSON line of glibc's heap counts
  (`varia.memory.malloc_counts`) each time the worker receives SIGUSR2.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import varia.ffmpeg.argv
import varia.ffmpeg.runner as runner
import varia.quality
import varia.render_output
from varia.memory import malloc_counts
from varia.stops import RenderRegistry


def _append(log_path: str, line: dict[str, Any]) -> None:
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def _instrument_stops(log_path: str) -> None:
    original = runner.stop_child  # type: ignore[attr-defined]

    async def logged_stop(*args: Any, **kwargs: Any) -> Any:
        begin = time.time()
        stage = await original(*args, **kwargs)
        _append(log_path, {"begin": begin, "end": time.time(), "stage": stage, "pid": args[0].pid})
        return stage

    runner.stop_child = logged_stop  # type: ignore[attr-defined]
    original_push = RenderRegistry.stop

    def logged_push(self: RenderRegistry, *args: Any) -> list[str]:
        found = original_push(self, *args)
        _append(log_path, {"pushed": time.time(), "found": len(found)})
        return found

    RenderRegistry.stop = logged_push  # type: ignore[method-assign,assignment]
    varia.quality.measure = _logged(log_path, varia.quality.measure)
    # decoding an output's samples is measuring's work too (the output check needs none)
    varia.render_output.output_samples = _logged(log_path, varia.render_output.output_samples)


def _logged(log_path: str, measuring: Any) -> Any:
    """`measuring`, logging the CPU seconds of its thread per call."""

    def logged(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.thread_time(), time.time()
        try:
            return measuring(*args, **kwargs)
        finally:
            _append(log_path, {"measured": wall, "measure_cpu_s": time.thread_time() - cpu})

    return logged


def _count_malloc_on_sigusr2(path: str) -> None:
    def dump(signum: int, frame: object) -> None:
        _append(path, {"at": time.time(), **(malloc_counts() or {})})

    signal.signal(signal.SIGUSR2, dump)


def main() -> None:
    """Apply the knobs, then run the ordinary `varia worker` command."""
    mallinfo_path = os.environ.get("BENCH_MALLINFO")
    if mallinfo_path:
        _count_malloc_on_sigusr2(mallinfo_path)
    cap = os.environ.get("BENCH_HEARTBEAT_CAP_S")
    if cap:
        os.environ["VARIA_HEARTBEAT_THROTTLE"] = cap
    period = os.environ.get("BENCH_STATS_PERIOD_S")
    if period:
        varia.ffmpeg.argv.STATS_PERIOD_S = float(period)
    if os.environ.get("BENCH_NO_QUALITY") == "1":
        varia.quality.measure = lambda *args, **kwargs: None  # type: ignore[assignment]
        varia.render_output.output_samples = lambda *args, **kwargs: None
    log_path = os.environ.get("BENCH_STOP_LOG")
    if log_path:
        _instrument_stops(log_path)
    from varia.cli import app

    profile_path = os.environ.get("BENCH_PROFILE")
    if not profile_path:
        app(["worker"])
        return
    import cProfile

    profiler = cProfile.Profile(time.thread_time)  # the main thread's CPU, not wall time
    try:
        profiler.runcall(app, ["worker"])
    finally:
        profiler.dump_stats(profile_path)


if __name__ == "__main__":
    main()
