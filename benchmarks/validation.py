"""Validation cost: `varia.media.check_output` against a full decode of the same output, and
whether the cheap check still rejects a cut-short file."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import av
import matplotlib.pyplot as plt

from benchmarks.plain import argvs_for, clip, run_plain, tasks_for
from benchmarks.report import Context, Report, Row, save_chart
from varia import media

NAME = "validation"


def full_decode(path: str) -> int:
    """Decode every video and audio frame of `path`; return the number of frames."""
    frames = 0
    with av.open(path) as container:
        for _frame in container.decode(*container.streams.video, *container.streams.audio):
            frames += 1
    return frames


def _median_ms(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _rejects(path: str, expected: float, tolerance: float) -> bool:
    try:
        media.check_output(path, expected, tolerance)
    except media.MediaError:
        return True
    return False


async def run(ctx: Context) -> Report:
    """Render one variation per clip size, then time both checks on it."""
    sizes = [
        ("tiny", 0.2, "64x64", False),
        ("small", 2.0, "320x240", True),
        ("720p", 6.0 if ctx.quick else 20.0, "1280x720", True),
    ]
    repeats_check, repeats_decode = (10, 2) if ctx.quick else (30, 5)
    outputs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="varia-bench-validation-") as tmp:
        root = Path(tmp)
        for name, seconds, size, audio in sizes:
            source = clip(root / "clips", name, seconds=seconds, size=size, audio=audio)
            [task] = tasks_for([source], 1, root / f"render-{name}")
            await run_plain(argvs_for([task]), 1)
            path = str(Path(task.job_dir) / task.temp_name)
            expected, tolerance = task.expected_duration_s, task.duration_tolerance_s
            check_ms = await asyncio.to_thread(
                _median_ms, partial(media.check_output, path, expected, tolerance), repeats_check
            )
            decode_ms = await asyncio.to_thread(
                _median_ms, partial(full_decode, path), repeats_decode
            )
            cut = Path(path).with_name(f"cut-{name}.mp4")
            data = Path(path).read_bytes()
            cut.write_bytes(data[: int(len(data) * 0.6)])
            outputs.append(
                {
                    "name": name,
                    "clip": f"{seconds:g} s {size}{' +audio' if audio else ''}",
                    "bytes": len(data),
                    "check_ms": check_ms,
                    "decode_ms": decode_ms,
                    "rejects_cut_file": _rejects(str(cut), expected, tolerance),
                }
            )
    report = Report(
        NAME,
        "Validation cost: check_output (open, first frame, tail packets, "
        "duration) vs decoding every frame",
    )
    for out in outputs:
        report.rows.append(
            Row(
                f"{out['name']} ({out['clip']}, {out['bytes'] // 1024} KiB): check / full decode",
                f"{out['check_ms']:.1f} / {out['decode_ms']:.1f} ms "
                f"({out['decode_ms'] / out['check_ms']:.0f}x cheaper)",
            )
        )
    report.rows.append(
        Row(
            "check rejects a copy cut to 60% of its bytes",
            f"{sum(o['rejects_cut_file'] for o in outputs)} of {len(outputs)}",
            "all",
            all(o["rejects_cut_file"] for o in outputs),
        )
    )
    report.data = {"outputs": outputs}
    return report


def chart(report: Report, path: Path) -> None:
    """Milliseconds per output for the check and the full decode (log scale)."""
    outputs = report.data["outputs"]
    fig, axis = plt.subplots(figsize=(8, 4.5))
    xs = list(range(len(outputs)))
    axis.bar([x - 0.2 for x in xs], [o["check_ms"] for o in outputs], 0.4, label="check_output")
    axis.bar([x + 0.2 for x in xs], [o["decode_ms"] for o in outputs], 0.4, label="full decode")
    axis.set_yscale("log")
    axis.set_xticks(xs, [f"{o['name']}\n{o['clip']}" for o in outputs])
    axis.set_ylabel("ms per output (median)")
    axis.set_title(report.title, fontsize=9)
    axis.legend()
    save_chart(fig, path)
