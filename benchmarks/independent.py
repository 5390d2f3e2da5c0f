"""Orchestration cost by an independent method, side by side with the `overhead` method.

Per shape, each round:
  (a) runs the job once, untimed, on a *capture* worker whose `VARIA_FFMPEG` is a wrapper that
      records each FFmpeg argv (recipes are seeded, so the same request gives the same argv);
  (b) times the same request (new job id, same seed) on a plain worker by the SERVER's
      workflow started → closed event times, with nothing polling: the client only waits on
      `handle.result()`; the worker's and the dev server's CPU are read before and after;
  (c) runs the captured argv by hand (`subprocess`, no varia code) in a pool of the job's width;
  (d) and, for comparison, the `overhead` benchmark's method on the same shape: the client's
      wall time with its FFmpeg watch polling /proc, against its plain asyncio pool.
The order of (b) to (d) alternates between rounds, and the shapes are interleaved round by round.
As a cross-check, each round's two wall times are also compared per FFmpeg CPU-second
(`benchmarks.stats.speed_normalized`): the host's speed, which moves both, drops out.
`BENCH_SHAPES=medium,short` and `BENCH_ROUNDS=n` (default `ROUNDS`; 1 with --quick) narrow a spot
check.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from temporalio.api.enums.v1 import EventType

from benchmarks.history import task_timings
from benchmarks.overhead import Series, plain_once, varia_once
from benchmarks.plain import Clip, argvs_for, clip, tasks_for
from benchmarks.raw import ArgvRecorder, CpuTimes, cpu_seconds, retarget, run_by_hand
from benchmarks.report import Context, Report, Row, fmt_s, save_chart
from benchmarks.stack import Stack, WorkerProcess, new_job_id, request
from benchmarks.stats import median_interval, speed_normalized
from varia.config import Settings

NAME = "independent"
SHAPES = {
    "medium": Series(12.0, "1280x720", 6, 2),
    "short": Series(4.0, "640x360", 8, 2),
    "demo": Series(4.0, "640x360", 3, 1, seed=7),  # `varia demo`'s job
}
TARGETS = {"medium": 1.05, "short": 1.10, "demo": 1.10}
ROUNDS = {"medium": 3, "short": 9, "demo": 9}
"""Interleaved rounds per shape (full profile): the short jobs' rounds spread from 0.96x to
1.44x in one run, and a round of them costs a tenth of a medium one, so they get more."""
NOISE_SHAPES = ("short", "demo")
"""Shapes whose rounds also run the raw argv a second time (A/A): the box's own noise floor.
One FFmpeg run, alone on this idle box, took 0.86-1.43 s over 12 identical runs, so a single
round's ratio says little; the A/A ratio shows how far two identical runs land apart."""
WATCHED_ROUNDS = 2
"""Rounds per shape that also run the `overhead` method's pair (it is reported, not judged)."""
CPU_TARGET_PCT = 2.0  # orchestration CPU (worker + server) against FFmpeg's, medium shape
KINDS = ("varia", "raw", "raw_again", "watched_varia", "watched_plain")


async def run(ctx: Context) -> Report:
    """Interleaved rounds of (a) to (d) per shape; rows per shape, both methods side by side."""
    # spot checks may ask for fewer; the quick profile only shows that it all works
    names = ["short", "demo"] if ctx.quick else list(SHAPES)
    names = [n for n in os.environ.get("BENCH_SHAPES", ",".join(names)).split(",") if n]
    asked = os.environ.get("BENCH_ROUNDS")
    rounds = {n: int(asked) if asked else 1 if ctx.quick else ROUNDS[n] for n in names}
    series: dict[str, dict[str, Any]] = {name: {"rounds": []} for name in names}
    async with Stack(NAME) as stack:
        recorder = ArgvRecorder(stack.root / "argv", Settings().ffmpeg_path()).install()
        capture = await stack.start_worker(
            max_renders=2, env={"VARIA_FFMPEG": str(recorder.wrapper)}
        )
        timed = await stack.start_worker(max_renders=2)
        assert stack.server.process is not None
        server_pid = stack.server.process.pid
        idle = await _idle_rates(timed, server_pid, 3.0 if ctx.quick else IDLE_S)
        clips = {
            name: clip(
                stack.root / "clips", name, seconds=SHAPES[name].seconds, size=SHAPES[name].size
            )
            for name in names
        }
        for index in range(max(rounds.values())):
            for name in (n for n in names if index < rounds[n]):
                entry = await _round(
                    stack, (capture, timed, server_pid), recorder, clips[name], name, index
                )
                series[name]["rounds"].append(entry)
    report = Report(
        NAME,
        "Orchestration cost, independent method (server times, nothing polling, captured argv "
        "by hand) beside the overhead method; interleaved rounds: "
        + ", ".join(f"{name} {count}" for name, count in rounds.items()),
    )
    for name in names:
        series[name]["shape"] = vars(SHAPES[name])
        report.rows += _rows(name, series[name]["rounds"], idle)
    report.rows.append(
        Row(
            "idle baseline, CPU per second: worker polling, dev server",
            f"{idle['worker_s']:.4f} s, {idle['server_s']:.4f} s",
        )
    )
    report.data = {"series": series, "idle_cpu_per_s": idle}
    report.notes.append(
        "'varia' is the server's started -> closed time with only handle.result() waiting; "
        "'raw' the captured argv run by plain subprocesses; the watched pair is the overhead "
        "benchmark's method (client wall time, /proc polled every 4 ms, asyncio pool)"
    )
    return report


async def _round(
    stack: Stack,
    procs: tuple[WorkerProcess, WorkerProcess, int],
    recorder: ArgvRecorder,
    source: Clip,
    name: str,
    index: int,
) -> dict[str, Any]:
    capture, timed, server_pid = procs
    shape = SHAPES[name]
    argvs, same_as_built, capture_dir = await _capture(stack, capture, recorder, source, shape)
    raw_argvs, again_argvs = (
        [retarget(a, capture_dir, stack.root / f"{kind}-{name}-{index}") for a in argvs]
        for kind in ("raw", "raw-again")
    )
    entry: dict[str, Any] = {"round": index, "argv_as_built": same_as_built}
    kinds = [
        kind
        for kind in KINDS
        if (kind != "raw_again" or name in NOISE_SHAPES)
        and (not kind.startswith("watched") or index < WATCHED_ROUNDS)
    ]
    order = kinds if index % 2 == 0 else kinds[::-1]
    entry["order"] = list(order)
    for kind in order:
        before = resource.getrusage(resource.RUSAGE_SELF)
        if kind == "varia":
            entry.update(await _timed_varia(stack, timed, server_pid, source, shape))
        elif kind == "raw":
            wall, runs = run_by_hand(raw_argvs, shape.concurrency)
            entry["raw_s"] = wall
            entry["raw_runs_s"] = [r.wall_s for r in runs]
            entry["raw_ffmpeg_cpu_s"] = sum(r.cpu_s for r in runs)
        elif kind == "raw_again":
            wall, runs = run_by_hand(again_argvs, shape.concurrency)
            entry["raw_again_s"] = wall
            entry["raw_again_ffmpeg_cpu_s"] = sum(r.cpu_s for r in runs)
        elif kind == "watched_varia":
            watched = await varia_once(stack, timed, source, shape)
            entry["watched_varia_s"] = watched["varia_s"]
        else:
            plain_dir = stack.root / f"plain-{name}-{index}"
            entry["watched_plain_s"] = (await plain_once(source, shape, plain_dir))["plain_s"]
        after = resource.getrusage(resource.RUSAGE_SELF)
        entry[f"bench_cpu_{kind}_s"] = _cpu(after) - _cpu(before)
    entry["ratio"] = entry["varia_s"] / entry["raw_s"]
    raw = (entry["raw_s"], entry["raw_ffmpeg_cpu_s"])
    entry["speed_ratio"] = speed_normalized(entry["varia_s"], entry["ffmpeg_cpu_s"], *raw)
    if "raw_again_s" in entry:
        entry["noise_ratio"] = entry["raw_again_s"] / entry["raw_s"]
        again = (entry["raw_again_s"], entry["raw_again_ffmpeg_cpu_s"])
        entry["speed_noise_ratio"] = speed_normalized(*again, *raw)
    if "watched_varia_s" in entry:
        entry["watched_ratio"] = entry["watched_varia_s"] / entry["watched_plain_s"]
    return entry


IDLE_S = 10.0


async def _idle_rates(worker: WorkerProcess, server_pid: int, seconds: float) -> dict[str, float]:
    """CPU seconds per second of the polling worker and of the dev server with no job: the
    part of a job's figure that grows with its wall time whatever the job does (on a loaded
    box, where the job takes longer, it swells the per-job figure)."""
    worker_before, server_before = cpu_seconds(worker.pid), cpu_seconds(server_pid)
    await asyncio.sleep(seconds)
    worker_used = cpu_seconds(worker.pid) - worker_before
    server_used = cpu_seconds(server_pid) - server_before
    return {
        "worker_s": worker_used.own_s / seconds,
        "server_s": (server_used.own_s + server_used.children_s) / seconds,
    }


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _job(stack: Stack, source: Clip, shape: Series) -> Any:
    return request(
        [source.path],
        shape.variations,
        stack.out_dir,
        concurrency=shape.concurrency,
        seed=shape.seed,
    )


async def _capture(
    stack: Stack, worker: WorkerProcess, recorder: ArgvRecorder, source: Clip, shape: Series
) -> tuple[list[list[str]], bool, Path]:
    """(a): the job's FFmpeg argv in the workflow's order, whether it equals the argv the
    benchmark builds from the recipe code, and the capture job's directory."""
    recorder.take()
    source = source.fresh()
    job_id = new_job_id("capture")
    handle = await stack.start_job(worker, _job(stack, source, shape), job_id)
    result = await handle.result()
    assert result.completed == shape.variations, result
    captured = [argv for argv in recorder.take() if "-progress" in argv]  # not `-version`
    job_dir = stack.job_dir(job_id)
    tasks = tasks_for([source], shape.variations, job_dir, seed=shape.seed)
    built = [[recorder.real_ffmpeg, *a[1:]] for a in argvs_for(tasks)]
    by_output = {argv[-1]: argv for argv in captured}
    ordered = [by_output[argv[-1]] for argv in built]
    return ordered, ordered == built and len(captured) == len(built), job_dir


async def _timed_varia(
    stack: Stack, worker: WorkerProcess, server_pid: int, source: Clip, shape: Series
) -> dict[str, Any]:
    """(b): one job timed by its history; CPU of the worker, its FFmpeg children and the server."""
    source = source.fresh()  # a new input, as every real job's
    job_id = new_job_id("timed")
    worker_before, server_before = cpu_seconds(worker.pid), cpu_seconds(server_pid)
    started_wall, started = time.time(), time.monotonic()
    handle = await stack.start_job(worker, _job(stack, source, shape), job_id)
    result = await handle.result()
    client_s = time.monotonic() - started
    worker_used: CpuTimes = cpu_seconds(worker.pid) - worker_before
    server_used: CpuTimes = cpu_seconds(server_pid) - server_before
    assert result.completed == shape.variations, result
    events = list((await handle.fetch_history()).events)
    seconds = [float(e.event_time.ToNanoseconds()) / 1e9 for e in (events[0], events[-1])]
    timings = task_timings(events)
    kinds = [event.event_type for event in events]
    return {
        "quality_cpu_s": worker.measure_cpu_since(started_wall),
        "events": len(events),
        "workflow_tasks": kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        "signals": kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
        "varia_s": seconds[1] - seconds[0],
        "client_s": client_s,
        "render_runs_s": timings["render_run"],
        "ffmpeg_cpu_s": worker_used.children_s,
        "worker_cpu_s": worker_used.own_s,
        "server_cpu_s": server_used.own_s + server_used.children_s,
    }


def _rows(name: str, rounds: list[dict[str, Any]], idle: dict[str, float]) -> list[Row]:
    shape = SHAPES[name]

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in rounds if key in r))

    def spread(key: str) -> str:
        values = [r[key] for r in rounds if key in r]
        if not values:
            return "n/a"
        return f"{statistics.median(values):.3f}x ({min(values):.3f}-{max(values):.3f})"

    target = TARGETS[name]
    ratio = med("ratio")
    low, high, sure = median_interval([r["ratio"] for r in rounds])
    noise = [r["noise_ratio"] for r in rounds if "noise_ratio" in r]
    watched = sum("watched_ratio" in r for r in rounds)
    activity_sum = [sum(r["render_runs_s"]) / sum(r["raw_runs_s"]) for r in rounds]
    orchestration = [
        100.0 * (r["worker_cpu_s"] + r["server_cpu_s"]) / r["ffmpeg_cpu_s"] for r in rounds
    ]
    cpu_pct = statistics.median(orchestration)
    without_quality = statistics.median(
        100.0 * (r["worker_cpu_s"] - r["quality_cpu_s"] + r["server_cpu_s"]) / r["ffmpeg_cpu_s"]
        for r in rounds
    )
    as_built = sum(bool(r["argv_as_built"]) for r in rounds)
    return [
        Row(
            f"[{name}: {shape.variations} x {shape.seconds:g} s {shape.size}, concurrency "
            f"{shape.concurrency}] varia, server started -> closed (median)",
            fmt_s(med("varia_s")),
        ),
        Row("  raw FFmpeg by hand, captured argv, same width (median)", fmt_s(med("raw_s"))),
        Row(
            f"  independent: varia / raw, median of {len(rounds)} rounds (range)",
            spread("ratio"),
            f"<= {target}x",
            ratio <= target,
        ),
        Row(
            f"  the median's {sure:.0%} confidence interval (order statistics)",
            f"{low:.3f}-{high:.3f}x",
        ),
        Row(
            f"  noise floor: raw / the same raw again (A/A), median of {len(noise)} rounds (range)",
            spread("noise_ratio") if noise else f"n/a (measured on {', '.join(NOISE_SHAPES)})",
        ),
        Row(
            "  cross-check, host speed taken out: (wall / FFmpeg CPU-s) varia / raw (range)",
            spread("speed_ratio"),
        ),
        Row(
            "    the same for raw again / raw (A/A)",
            spread("speed_noise_ratio")
            if any("speed_noise_ratio" in r for r in rounds)
            else f"n/a (measured on {', '.join(NOISE_SHAPES)})",
        ),
        Row(
            f"  overhead method: client time / plain pool, both watched ({watched} rounds)",
            spread("watched_ratio"),
        ),
        Row(
            "  render activities started -> completed (queued ones wait in them) / raw FFmpeg runs",
            f"{statistics.median(activity_sum):.3f}x",
        ),
        Row(
            "  CPU per job (median): FFmpeg under varia / by hand",
            f"{med('ffmpeg_cpu_s'):.2f} / {med('raw_ffmpeg_cpu_s'):.2f} s",
        ),
        Row(
            "  CPU per job (median): worker self, dev server",
            f"{med('worker_cpu_s'):.3f} s, {med('server_cpu_s'):.3f} s",
        ),
        Row(
            "  orchestration CPU (worker + server) / FFmpeg CPU",
            f"{cpu_pct:.2f} %",
            f"<= {CPU_TARGET_PCT:g} %" if name == "medium" else "report",
            cpu_pct <= CPU_TARGET_PCT if name == "medium" else None,
        ),
        Row(
            "  of the worker's CPU: quality measuring (a feature's work); orchestration without it",
            f"{med('quality_cpu_s'):.3f} s; {without_quality:.2f} %",
            f"<= {CPU_TARGET_PCT:g} %" if name == "medium" else "report",
            without_quality <= CPU_TARGET_PCT if name == "medium" else None,
        ),
        Row(
            "  of the server's CPU: its idle baseline over the job's wall time",
            f"{idle['server_s'] * med('varia_s'):.3f} s",
        ),
        Row(
            "  history per job (median): events, workflow tasks, progress signals",
            f"{med('events'):.0f}, {med('workflow_tasks'):.0f}, {med('signals'):.0f}",
        ),
        Row(
            "  benchmark process CPU: watched varia run / independent run",
            f"{med('bench_cpu_watched_varia_s'):.2f} / {med('bench_cpu_varia_s'):.2f} s",
        ),
        Row(
            "  captured argv = the argv the benchmark builds", f"{as_built} of {len(rounds)} rounds"
        ),
    ]


def chart(report: Report, path: Path) -> None:
    """Per shape: each round's ratio by both methods; and CPU per job by process."""
    series = report.data["series"]
    fig, axes = plt.subplots(1, len(series) + 1, figsize=(5 * (len(series) + 1), 4.2))
    for axis, (name, data) in zip(axes, series.items(), strict=False):
        rounds = data["rounds"]
        xs = list(range(len(rounds)))
        axis.plot(xs, [r["ratio"] for r in rounds], "o-", label="independent (server times)")
        for key, style, label in (
            ("watched_ratio", "s--", "overhead method"),
            ("noise_ratio", "x:", "raw / raw again (noise)"),
        ):
            marked = [(x, r[key]) for x, r in zip(xs, rounds, strict=True) if key in r]
            if marked:
                axis.plot(*zip(*marked, strict=True), style, label=label)
        axis.axhline(TARGETS[name], color="grey", linestyle=":", label="target")
        axis.set_xticks(xs, [str(r["round"]) for r in rounds])
        axis.set_xlabel("round")
        axis.set_ylabel("varia / raw FFmpeg")
        axis.set_title(name, fontsize=10)
        axis.legend(fontsize=8)
    cpu = axes[-1]
    names = list(series)
    parts = ("worker_cpu_s", "server_cpu_s")
    bottoms = [0.0] * len(names)
    for part in parts:
        values = [
            100.0 * statistics.median(r[part] / r["ffmpeg_cpu_s"] for r in series[n]["rounds"])
            for n in names
        ]
        cpu.bar(names, values, bottom=bottoms, label=part.removesuffix("_cpu_s"))
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    cpu.axhline(CPU_TARGET_PCT, color="grey", linestyle=":")
    cpu.set_ylabel("% of FFmpeg's CPU per job (median)")
    cpu.set_title("orchestration CPU", fontsize=10)
    cpu.legend(fontsize=8)
    save_chart(fig, path)
