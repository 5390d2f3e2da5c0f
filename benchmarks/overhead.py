"""Orchestration overhead: a job of 8 short variations against the very same FFmpeg argv run
by a plain asyncio pool at the same concurrency, side by side, in interleaved rounds. The
`demo` series does the same for the demo's job: 3 variations at concurrency 1.

Besides the ratio it splits varia's extra time into the job's head (start → first FFmpeg),
the hand-offs between renders (FFmpeg exit → the next FFmpeg in that slot, with each part
taken from the workflow history) and its tail (last FFmpeg exit → result).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.history import all_runs, median_phases, render_phases
from benchmarks.plain import Clip, argvs_for, clip, run_plain, tasks_for
from benchmarks.report import Context, Report, Row, fmt_s, save_chart
from benchmarks.stack import FfmpegWatch, Stack, WorkerProcess, new_job_id, request
from varia import names

NAME = "overhead"
TARGET = 1.03


@dataclass(frozen=True)
class Series:
    """One job shape: a clip, how many variations, how many at once."""

    seconds: float
    size: str
    variations: int
    concurrency: int
    seed: int = 0


SERIES = {
    "short": Series(4.0, "640x360", 8, 2),
    "demo": Series(4.0, "640x360", 3, 1, seed=7),  # `varia demo`'s job
}
"""`independent` runs this method too, as its step (d), on these two shapes and on its longer
1280x720 `medium`, 3 rounds each (longer renders amortise the fixed cost: see it there); what
only this benchmark adds is the split of the extra time into head, hand-offs and tail, and
hand-offs weigh most on short renders."""


async def run(ctx: Context) -> Report:
    """Measure varia's wall time against the plain pool's, round by round, per clip."""
    rounds = 1 if ctx.quick else 2  # `independent` runs this method on 3 shapes, 3 rounds
    series: dict[str, dict[str, Any]] = {}
    async with Stack(NAME) as stack:
        worker = await stack.start_worker(max_renders=max(s.concurrency for s in SERIES.values()))
        for name, shape in SERIES.items():
            source = clip(stack.root / "clips", name, seconds=shape.seconds, size=shape.size)
            series[name] = await _series(stack, worker, source, shape, rounds)
    report = Report(
        NAME,
        "Orchestration overhead: varia job vs plain asyncio pool running the same argv at the "
        f"same concurrency, {rounds} interleaved rounds",
    )
    for name, data in series.items():
        report.rows += _rows(name, data)
    report.data = {"series": series}
    report.notes.append(
        "the ratio is fixed cost over FFmpeg time: per render about one hand-off (see the "
        "parts), per job one head and one tail; longer renders amortise it"
    )
    return report


async def _series(
    stack: Stack, worker: WorkerProcess, source: Clip, shape: Series, rounds: int
) -> dict[str, Any]:
    per_round: list[dict[str, Any]] = []
    timelines: dict[str, list[tuple[float, float]]] = {}
    for index in range(rounds + 1):  # round 0 warms both paths up and is not counted
        order = ("varia", "plain") if index % 2 else ("plain", "varia")
        entry: dict[str, Any] = {"round": index, "order": list(order)}
        for kind in order:
            if kind == "varia":
                entry.update(await varia_once(stack, worker, source, shape))
                timelines["varia"] = entry.pop("timeline")
            else:
                plain_dir = stack.root / f"plain-{source.path.stem}-{index}"
                entry.update(await plain_once(source, shape, plain_dir))
                timelines["plain"] = entry.pop("timeline")
        entry["ratio"] = entry["varia_s"] / entry["plain_s"]
        per_round.append(entry)
    counted = per_round[1:]
    return {
        "clip": {
            "seconds": source.info.duration_s,
            "size": f"{source.info.width}x{source.info.height}",
            "audio": source.info.has_audio,
        },
        "variations": shape.variations,
        "concurrency": shape.concurrency,
        "rounds": per_round,
        "median_ratio": statistics.median(r["ratio"] for r in counted),
        "pooled_ratio": sum(r["varia_s"] for r in counted) / sum(r["plain_s"] for r in counted),
        "timelines": timelines,
    }


async def plain_once(source: Clip, shape: Series, plain_dir: Path) -> dict[str, Any]:
    """One plain-pool run of the argv the benchmark builds for `shape`, FFmpeg watched."""
    argvs = argvs_for(tasks_for([source], shape.variations, plain_dir, seed=shape.seed))
    with FfmpegWatch({os.getpid()}, f"{plain_dir}/") as watch:
        started = time.monotonic()
        plain_s = await run_plain(argvs, shape.concurrency)
        watch.poll()
    return {
        "plain_s": plain_s,
        "plain_ffmpeg_mean_s": _mean_span(watch),
        "timeline": _relative(watch, started),
    }


async def varia_once(
    stack: Stack, worker: WorkerProcess, source: Clip, shape: Series
) -> dict[str, Any]:
    """One varia job of `shape`, timed by the client, FFmpeg watched, split into phases."""
    job_id = new_job_id(NAME)
    job = request(
        [source.fresh().path],  # a new input, as every real job's
        shape.variations,
        stack.out_dir,
        concurrency=shape.concurrency,
        seed=shape.seed,
    )
    with stack.watch(worker, job_id) as watch:
        started = time.monotonic()
        handle = await stack.start_job(worker, job, job_id)
        result = await handle.result()
        ended = time.monotonic()
        watch.poll()
    assert result.completed == shape.variations, result
    spans = sorted(watch.intervals())
    spawns = [begin for begin, _ in spans]
    exits = sorted(end for _, end in spans)
    by_temp = {
        t.temp_name: names.render_activity_id(t.input_index, t.variation)
        for t in tasks_for([source], shape.variations, stack.job_dir(job_id), seed=shape.seed)
    }
    wall = {by_temp[n]: span for n, span in watch.wall_spans().items() if n in by_temp}
    [history] = await all_runs(stack.client, job_id)
    return {
        "varia_s": ended - started,
        "head_s": spawns[0] - started,
        "tail_s": ended - exits[-1],
        # the k-th render beyond the first `concurrency` takes the slot the k-th exit freed
        "handoffs_s": [s - e for s, e in zip(spawns[shape.concurrency :], exits, strict=False)],
        "varia_ffmpeg_mean_s": _mean_span(watch),
        "phases": render_phases(history.events, wall),
        "timeline": _relative(watch, started),
    }


def _rows(name: str, data: dict[str, Any]) -> list[Row]:
    counted = data["rounds"][1:]
    clip_text = (
        f"{data['variations']} x {data['clip']['seconds']:g} s {data['clip']['size']}, "
        f"concurrency {data['concurrency']}"
    )

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in counted))

    handoffs = [h for r in counted for h in r["handoffs_s"]]
    phases = median_phases([p for r in counted for p in r["phases"]])
    ratio = data["median_ratio"]
    rows = [
        Row(f"[{name}: {clip_text}] varia job wall time (median)", fmt_s(med("varia_s"))),
        Row("  plain pool, same argv (median)", fmt_s(med("plain_s"))),
        Row(
            "  overhead ratio (median of rounds)", f"{ratio:.3f}x", f"<= {TARGET}x", ratio <= TARGET
        ),
        Row("  overhead ratio (pooled)", f"{data['pooled_ratio']:.3f}x"),
        Row(
            "  mean FFmpeg run: varia / plain",
            f"{med('varia_ffmpeg_mean_s'):.3f} / {med('plain_ffmpeg_mean_s'):.3f} s",
        ),
        Row("  head: start -> first FFmpeg", fmt_s(med("head_s"))),
        Row(
            "  hand-off: FFmpeg exit -> next FFmpeg in the slot",
            fmt_s(statistics.median(handoffs)) if handoffs else "n/a",
        ),
        Row("    = exit -> activity completed (check, fsync, rename)", fmt_s(phases["tail_s"])),
        Row(
            "    + completed -> next render scheduled (workflow task)",
            fmt_s(phases["turnaround_s"]),
        ),
        Row("    + scheduled -> activity started", fmt_s(phases["dispatch_s"])),
        Row("    + started -> FFmpeg running", fmt_s(phases["head_s"])),
        Row("  tail: last FFmpeg exit -> result (cleanup, manifest)", fmt_s(med("tail_s"))),
    ]
    return rows


def _mean_span(watch: FfmpegWatch) -> float:
    spans = [end - begin for begin, end in watch.intervals() if end == end]
    return statistics.mean(spans) if spans else float("nan")


def _relative(watch: FfmpegWatch, origin: float) -> list[tuple[float, float]]:
    return sorted((a - origin, b - origin) for a, b in watch.intervals())


def chart(report: Report, path: Path) -> None:
    """Per-round wall times for each clip, and the last round's FFmpeg timeline (short clip)."""
    series = report.data["series"]
    fig, axes = plt.subplots(1, len(series) + 1, figsize=(6 * (len(series) + 1), 4.5))
    for axis, (name, data) in zip(axes, series.items(), strict=False):
        rounds = data["rounds"][1:]
        xs = list(range(len(rounds)))
        axis.bar([x - 0.2 for x in xs], [r["plain_s"] for r in rounds], 0.4, label="plain pool")
        axis.bar([x + 0.2 for x in xs], [r["varia_s"] for r in rounds], 0.4, label="varia job")
        for x, r in zip(xs, rounds, strict=True):
            axis.annotate(
                f"{r['ratio']:.3f}x", (x + 0.2, r["varia_s"]), ha="center", va="bottom", fontsize=8
            )
        axis.set_xticks(xs, [f"{r['round']} ({r['order'][0]} 1st)" for r in rounds], fontsize=8)
        axis.set_ylabel("wall time, s")
        axis.set_title(
            f"{name} ({data['variations']} x {data['clip']['seconds']:g} s): "
            f"median {data['median_ratio']:.3f}x",
            fontsize=10,
        )
        axis.legend(loc="lower right")
    gantt = axes[-1]
    timelines = series["short"]["timelines"]
    for row, kind in enumerate(("plain", "varia")):
        for lane, (begin, end) in enumerate(timelines.get(kind, [])):
            gantt.barh(
                row * 10 + lane,
                end - begin,
                left=begin,
                height=0.8,
                color="C0" if kind == "plain" else "C1",
            )
    gantt.set_yticks([3.5, 13.5], ["plain pool", "varia job"])
    gantt.set_xlabel("seconds since start (one bar per FFmpeg)")
    gantt.set_title("short clip, last round: FFmpeg processes over time", fontsize=10)
    save_chart(fig, path)
