"""Quality cost: what measuring every output and drawing the contact sheet add to a job's
render time, on the benchmark shapes (4 s 640x360 and 12 s 1280x720 clips).

Each round renders a shape's variations with the render activity's exact argv (2 at once, as a
job of concurrency 2 on 2 cores), then runs what the activities add: per output
`complete_result` (sampled frames, FFmpeg ssim/psnr, pHash, SHA-256, FFmpeg record, sheet
frame) and per job the nearest siblings and `write_sheets`, one after the other. The source's
samples are forgotten first (a job measures a new input once). Figures:

- CPU: every CPU-second of measuring and the sheet (this process and any child it spawned) /
  the FFmpeg CPU-seconds of the renders;
- wall, serial bound: measuring's wall divided among the job's render slots (each slot measures
  its own outputs right after rendering them, as the activity does) plus the sheet's wall (the
  finish activity draws it after the last render) / the job's render wall;
- wall, in the job: a second pool renders the same variations with each slot measuring its
  output right after (in a thread, as the activity does), then the sheet; its wall less the
  plain renders' wall / the plain renders' wall (noisy on a shared box: it is the difference of
  two walls).

The one-off import of numpy, Pillow and imagehash/scipy (once per worker process) is reported
apart.

The benchmark clips are cheap to sample (a keyframe every second, no B-frames), so sampling a
source as cameras and encoders at their defaults write it (keyframes seconds apart, B-frames)
is timed apart: varia's `frames_at` against the plain seek-and-decode for each sample
(`benchmarks.plain.frames_by_plain_seeks`), CPU of every thread, same pixels checked.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.plain import (
    Clip,
    _run_one,
    argvs_for,
    clip,
    frames_by_plain_seeks,
    run_plain,
    tasks_for,
)
from benchmarks.report import Context, Report, Row, save_chart
from varia import frames, jobdir
from varia.config import Settings
from varia.models import OutputEntry, RenderResult, RenderTask
from varia.sampling import sample_times

NAME = "quality"
TARGET = 0.05
CONCURRENCY = 2


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu() -> float:
    """CPU seconds of this process (every thread) and of its waited-for children."""
    return time.process_time() + _children_cpu()


def _import_cost() -> float:
    """What a worker pays once: the imports and the font (not counted in the rounds)."""
    started = time.perf_counter()
    import imagehash  # noqa: F401
    import numpy  # noqa: F401
    import scipy.fftpack  # noqa: F401
    from PIL import Image, ImageDraw  # noqa: F401

    from varia import sheet

    sheet.preload_font()
    return time.perf_counter() - started


def _measure(task: RenderTask, argv: list[str], job_dir: Path) -> RenderResult:
    from varia.measure import complete_result

    final = job_dir / task.output_name
    os.replace(job_dir / task.temp_name, final)
    bare = RenderResult(
        input_index=0,
        variation=task.variation,
        path=final.name,
        bytes=final.stat().st_size,
        duration_s=task.expected_duration_s,
    )
    return complete_result(bare, final, task, argv)


def _sheet(
    job_dir: Path, source: Clip, tasks: list[RenderTask], results: list[RenderResult]
) -> None:
    from varia.quality import with_siblings
    from varia.sheet import write_sheets

    results = with_siblings(results)
    entries = [
        OutputEntry.of(r, str(source.path), t.recipe) for r, t in zip(results, tasks, strict=True)
    ]
    sheets, problems = write_sheets(job_dir, [str(source.path)], [source.path.stem], entries)
    assert sheets and not problems, problems


def _forget_source() -> None:
    from varia.quality import _source_cached

    _source_cached.cache_clear()


async def _serial_round(root: Path, source: Clip, variations: int) -> dict[str, float]:
    """Renders, then measuring and the sheet one after the other, each timed."""
    job_dir = jobdir.open_job_dir(root, f"job-{source.path.stem}-{time.monotonic_ns()}")
    tasks = tasks_for([source], variations, job_dir)
    argvs = argvs_for(tasks)
    cpu = _children_cpu()
    render_wall = await run_plain(argvs, CONCURRENCY)
    render_cpu = _children_cpu() - cpu
    _forget_source()

    started, cpu = time.perf_counter(), _cpu()
    results = [_measure(task, argv, job_dir) for task, argv in zip(tasks, argvs, strict=True)]
    measure_wall, measure_cpu = time.perf_counter() - started, _cpu() - cpu

    started, cpu = time.perf_counter(), _cpu()
    _sheet(job_dir, source, tasks, results)
    sheet_wall, sheet_cpu = time.perf_counter() - started, _cpu() - cpu
    shutil.rmtree(job_dir)
    return {
        "render_wall": render_wall,
        "render_cpu": render_cpu,
        "measure_wall": measure_wall,
        "measure_cpu": measure_cpu,
        "sheet_wall": sheet_wall,
        "sheet_cpu": sheet_cpu,
    }


async def _job_round(root: Path, source: Clip, variations: int) -> float:
    """The job's wall with measuring where the activity does it: each slot renders, then
    measures its output in a thread; the sheet after the last."""
    job_dir = jobdir.open_job_dir(root, f"job-{source.path.stem}-{time.monotonic_ns()}")
    tasks = tasks_for([source], variations, job_dir)
    argvs = argvs_for(tasks)
    _forget_source()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def render_and_measure(task: RenderTask, argv: list[str]) -> RenderResult:
        async with gate:
            await _run_one(argv)
            return await asyncio.to_thread(_measure, task, argv, job_dir)

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        running = [
            group.create_task(render_and_measure(t, a)) for t, a in zip(tasks, argvs, strict=True)
        ]
    await asyncio.to_thread(_sheet, job_dir, source, tasks, [r.result() for r in running])
    wall = time.monotonic() - started
    shutil.rmtree(job_dir)
    return wall


SHAPES: list[dict[str, Any]] = [
    {"name": "short", "seconds": 4.0, "size": "640x360", "variations": 8, "rounds": 3},
    {"name": "medium", "seconds": 12.0, "size": "1280x720", "variations": 6, "rounds": 1},
]
"""`rounds` is the full profile's (the quick one runs 1 round of 2 variations). The medium
shape's figures are CPU and wall ratios 3-6 times under the 5 % target, with a spread of
0.76-0.92 % (CPU) and 0.6-1.7 % (wall) over 3 rounds: one round of its 6 renders settles them
at a sixth of the cost. The short shape sits near the target and keeps 3."""


SOURCES: dict[str, list[str]] = {
    "x264 defaults (keyframes 10 s apart, B-frames)": ["-c:v", "libx264", "-preset", "veryfast"],
    "keyframes 2 s apart, B-frames": ["-c:v", "libx264", "-preset", "veryfast", "-g", "50"],
}
"""Sources of 12 s 1280x720 at 25 fps, encoded as `SOURCES` says, whose sampling is timed."""


def _sampling(root: Path, repeats: int) -> list[dict[str, Any]]:
    """For each of `SOURCES`: CPU (all threads) of sampling it the plain way and varia's way,
    median of `repeats` interleaved, and whether the pixels are the same."""
    figures: list[dict[str, Any]] = []
    for name, codec in SOURCES.items():
        path = root / f"source-{len(figures)}.mp4"
        lavfi = "testsrc2=size=1280x720:rate=25:duration=12"
        argv = [Settings().ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i", lavfi, *codec]
        subprocess.run([*argv, str(path)], check=True, capture_output=True)
        times = sample_times(12.0)
        plain_ms, varia_ms, same = [], [], True
        for _ in range(repeats):
            cpu = time.process_time()
            plain = frames_by_plain_seeks(str(path), times)
            plain_ms.append(1000 * (time.process_time() - cpu))
            cpu = time.process_time()
            ours = frames.frames_at(str(path), times, source=True)
            varia_ms.append(1000 * (time.process_time() - cpu))
            same = same and all(
                (a.to_ndarray() == b.to_ndarray()).all() for a, b in zip(plain, ours, strict=True)
            )
        figures.append(
            {
                "source": name,
                "plain_ms": statistics.median(plain_ms),
                "varia_ms": statistics.median(varia_ms),
                "same_pixels": same,
            }
        )
    return figures


async def run(ctx: Context) -> Report:
    """Each shape: `rounds` rounds of (plain renders then measure and sheet; renders measured
    in the job); medians of the ratios."""
    imports = _import_cost()
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="varia-bench-quality-") as tmp:
        root = Path(tmp)
        for shape in SHAPES:
            variations = 2 if ctx.quick else int(shape["variations"])
            rounds = 1 if ctx.quick else int(shape["rounds"])
            source = clip(
                root / "clips", shape["name"], seconds=shape["seconds"], size=shape["size"]
            )
            samples = []
            for _ in range(rounds):
                sample = await _serial_round(root, source, variations)
                sample["job_wall"] = await _job_round(root, source, variations)
                samples.append(sample)
            added_cpu = [(s["measure_cpu"] + s["sheet_cpu"]) / s["render_cpu"] for s in samples]
            serial = [
                (s["measure_wall"] / CONCURRENCY + s["sheet_wall"]) / s["render_wall"]
                for s in samples
            ]
            in_job = [s["job_wall"] / s["render_wall"] - 1 for s in samples]
            figures.append(
                {
                    "shape": f"{variations} x {shape['seconds']:g} s {shape['size']}",
                    "rounds": samples,
                    "cpu_ratio": statistics.median(added_cpu),
                    "wall_ratio": statistics.median(serial),
                    "job_wall_ratio": statistics.median(in_job),
                    "measure_cpu_ms_per_output": statistics.median(
                        1000 * s["measure_cpu"] / variations for s in samples
                    ),
                    "sheet_cpu_ms": statistics.median(1000 * s["sheet_cpu"] for s in samples),
                    "render_cpu_s": statistics.median(s["render_cpu"] for s in samples),
                    "render_wall_s": statistics.median(s["render_wall"] for s in samples),
                }
            )
        sampling = _sampling(root, 1 if ctx.quick else 3)
    report = Report(NAME, "Quality cost: measuring every output + the contact sheet")
    for fig in figures:
        worst = max(fig["cpu_ratio"], fig["wall_ratio"])
        report.rows.append(
            Row(
                f"{fig['shape']}, concurrency {CONCURRENCY}: added CPU / FFmpeg CPU; "
                f"added wall (serial bound) / render wall (median of {len(fig['rounds'])})",
                f"{100 * fig['cpu_ratio']:.1f} %; {100 * fig['wall_ratio']:.1f} % "
                f"({fig['measure_cpu_ms_per_output']:.0f} ms CPU per output, sheet "
                f"{fig['sheet_cpu_ms']:.0f} ms CPU, renders {fig['render_cpu_s']:.2f} s CPU / "
                f"{fig['render_wall_s']:.2f} s wall)",
                "≤ 5 %",
                worst <= TARGET,
            )
        )
        report.rows.append(
            Row(
                f"{fig['shape']}: job wall with measuring in the slots + sheet / plain renders",
                f"{100 * fig['job_wall_ratio']:+.1f} % (difference of two walls: noisy)",
            )
        )
    for fig in sampling:
        report.rows.append(
            Row(
                f"a 12 s 1280x720 source's 3 samples, {fig['source']}: CPU, plain seek and "
                "decode per sample -> varia (same pixels)",
                f"{fig['plain_ms']:.0f} -> {fig['varia_ms']:.0f} ms "
                f"({fig['plain_ms'] / fig['varia_ms']:.1f}x; same: {fig['same_pixels']})",
            )
        )
    report.rows.append(Row("one-off import of numpy, Pillow, imagehash/scipy", f"{imports:.2f} s"))
    report.data = {"shapes": figures, "import_s": imports, "source_sampling": sampling}
    return report


async def _rounds(name: str, rounds: int) -> None:
    """Print each round of one shape (a quick look between full runs)."""
    shape = next(s for s in SHAPES if s["name"] == name)
    print(f"one-off imports {_import_cost():.2f} s (not counted)")
    with tempfile.TemporaryDirectory(prefix="varia-bench-quality-") as tmp:
        root = Path(tmp)
        source = clip(root / "clips", name, seconds=shape["seconds"], size=shape["size"])
        for _ in range(rounds):
            s = await _serial_round(root, source, shape["variations"])
            s["job_wall"] = await _job_round(root, source, shape["variations"])
            cpu = (s["measure_cpu"] + s["sheet_cpu"]) / s["render_cpu"]
            serial = (s["measure_wall"] / CONCURRENCY + s["sheet_wall"]) / s["render_wall"]
            in_job = s["job_wall"] / s["render_wall"] - 1
            print(
                f"CPU {100 * cpu:.1f} %; wall, serial bound {100 * serial:.1f} %, in the job "
                f"{100 * in_job:+.1f} %; load {os.getloadavg()[0]:.1f}",
                {k: round(v, 3) for k, v in s.items()},
            )


def chart(report: Report, path: Path) -> None:
    """Added cost as a percentage of the render, CPU and wall, per shape."""
    shapes = report.data["shapes"]
    fig, axis = plt.subplots(figsize=(7, 4))
    xs = list(range(len(shapes)))
    axis.bar([x - 0.2 for x in xs], [100 * s["cpu_ratio"] for s in shapes], 0.4, label="CPU")
    axis.bar([x + 0.2 for x in xs], [100 * s["wall_ratio"] for s in shapes], 0.4, label="wall")
    axis.axhline(100 * TARGET, color="red", linestyle="--", label="target 5 %")
    axis.set_xticks(xs, [s["shape"] for s in shapes])
    axis.set_ylabel("% of render")
    axis.set_title("measuring + contact sheet, % of the render", fontsize=10)
    axis.legend()
    save_chart(fig, path)


if __name__ == "__main__":  # python -m benchmarks.quality [short|medium] [rounds]
    import sys

    shape_name = sys.argv[1] if len(sys.argv) > 1 else "short"
    asyncio.run(_rounds(shape_name, int(sys.argv[2]) if len(sys.argv) > 2 else 3))
