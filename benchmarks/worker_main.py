"""`python -m benchmarks.worker_main`: `varia worker`, instrumented for the benchmarks.

Optional environment knobs, read at start:
- `BENCH_HEARTBEAT_CAP_S` overrides the worker's heartbeat throttle cap (the throttle sweep);
- `BENCH_STATS_PERIOD_S` overrides FFmpeg's `-stats_period` (it bounds how fast `q` acts);
- `BENCH_STOP_LOG` names a file that gets one JSON line per FFmpeg stop (wall-clock begin and
  end, and the stage that ended it), so a cancel's latency splits into "reached the activity"
  and "FFmpeg stopped".
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import varia.ffmpeg.argv
import varia.ffmpeg.runner as runner


def _instrument_stops(log_path: str) -> None:
    original = runner.stop_child  # type: ignore[attr-defined]

    async def logged_stop(*args: Any, **kwargs: Any) -> Any:
        begin = time.time()
        stage = await original(*args, **kwargs)
        line = {"begin": begin, "end": time.time(), "stage": stage, "pid": args[0].pid}
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        return stage

    runner.stop_child = logged_stop  # type: ignore[attr-defined]


def main() -> None:
    """Apply the knobs, then run the ordinary `varia worker` command."""
    cap = os.environ.get("BENCH_HEARTBEAT_CAP_S")
    if cap:
        os.environ["VARIA_HEARTBEAT_THROTTLE"] = cap
    period = os.environ.get("BENCH_STATS_PERIOD_S")
    if period:
        varia.ffmpeg.argv.STATS_PERIOD_S = float(period)
    log_path = os.environ.get("BENCH_STOP_LOG")
    if log_path:
        _instrument_stops(log_path)
    from varia.cli import app

    app(["worker"])


if __name__ == "__main__":
    main()
