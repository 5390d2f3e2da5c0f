"""Quality cost: what measuring every output and drawing the contact sheet add to a job's
render time, on the benchmark shapes (4 s 640x360 and 12 s 1280x720 clips).

Renders each shape's variations with the render activity's exact argv (2 at once, as a job of
concurrency 2 on 2 cores), then runs what the activities add: per output `complete_result`
(sampled frames, FFmpeg ssim/psnr, pHash, SHA-256, FFmpeg record) and per job the nearest
siblings and `write_sheets`. Figures: CPU seconds added / FFmpeg CPU seconds, and wall seconds
added (one after the other) / the job's render wall time. The one-off import of numpy, Pillow
and imagehash (once per worker process) is reported apart.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.plain import argvs_for, clip, run_plain, tasks_for
from benchmarks.report import Context, Report, Row
from varia import jobdir
from varia.models import OutputEntry, RenderResult

NAME = "quality"
TARGET = 0.05
CONCURRENCY = 2


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _import_cost() -> float:
    """What a worker pays once: the imports and the font (not counted in the rounds)."""
    started = time.perf_counter()
    import imagehash  # noqa: F401
    import numpy  # noqa: F401
    import scipy.fftpack  # noqa: F401
    from PIL import Image, ImageDraw  # noqa: F401

    from varia import sheet

    sheet._font()
    return time.perf_counter() - started


async def _one_round(root: Path, shape: dict[str, Any], variations: int) -> dict[str, float]:
    from varia.measure import complete_result
    from varia.quality import with_siblings
    from varia.sheet import write_sheets

    source = clip(root / "clips", shape["name"], seconds=shape["seconds"], size=shape["size"])
    job_dir = jobdir.open_job_dir(root, f"job-{shape['name']}-{time.monotonic_ns()}")
    tasks = tasks_for([source], variations, job_dir)
    argvs = argvs_for(tasks)
    cpu = _children_cpu()
    render_wall = await run_plain(argvs, CONCURRENCY)
    render_cpu = _children_cpu() - cpu
    for task in tasks:
        os.replace(job_dir / task.temp_name, job_dir / task.output_name)

    started, cpu = time.perf_counter(), time.process_time()
    results = []
    for task, argv in zip(tasks, argvs, strict=True):
        final = job_dir / task.output_name
        bare = RenderResult(
            input_index=0,
            variation=task.variation,
            path=final.name,
            bytes=final.stat().st_size,
            duration_s=task.expected_duration_s,
        )
        results.append(complete_result(bare, final, task, argv))
    measure_wall, measure_cpu = time.perf_counter() - started, time.process_time() - cpu

    started, cpu = time.perf_counter(), time.process_time()
    results = with_siblings(results)
    entries = [
        OutputEntry.of(r, str(source.path), t.recipe) for r, t in zip(results, tasks, strict=True)
    ]
    sheets, problems = write_sheets(job_dir, [str(source.path)], [source.path.stem], entries)
    sheet_wall, sheet_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert sheets and not problems, problems
    shutil.rmtree(job_dir)
    return {
        "render_wall": render_wall,
        "render_cpu": render_cpu,
        "measure_wall": measure_wall,
        "measure_cpu": measure_cpu,
        "sheet_wall": sheet_wall,
        "sheet_cpu": sheet_cpu,
    }


async def run(ctx: Context) -> Report:
    """Each shape: `rounds` rounds of render, then measure and sheet; medians of the ratios."""
    shapes = [
        {"name": "short", "seconds": 4.0, "size": "640x360", "variations": 8},
        {"name": "medium", "seconds": 12.0, "size": "1280x720", "variations": 6},
    ]
    rounds = 1 if ctx.quick else 3
    imports = _import_cost()
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="varia-bench-quality-") as tmp:
        root = Path(tmp)
        for shape in shapes:
            variations = 4 if ctx.quick else int(shape["variations"])
            samples = [await _one_round(root, shape, variations) for _ in range(rounds)]
            added_cpu = [(s["measure_cpu"] + s["sheet_cpu"]) / s["render_cpu"] for s in samples]
            added_wall = [(s["measure_wall"] + s["sheet_wall"]) / s["render_wall"] for s in samples]
            figures.append(
                {
                    "shape": f"{variations} x {shape['seconds']:g} s {shape['size']}",
                    "rounds": samples,
                    "cpu_ratio": statistics.median(added_cpu),
                    "wall_ratio": statistics.median(added_wall),
                    "measure_ms_per_output": statistics.median(
                        1000 * s["measure_wall"] / variations for s in samples
                    ),
                    "sheet_ms": statistics.median(1000 * s["sheet_wall"] for s in samples),
                    "render_wall_s": statistics.median(s["render_wall"] for s in samples),
                }
            )
    report = Report(NAME, "Quality cost: measuring every output + the contact sheet")
    for fig in figures:
        worst = max(fig["cpu_ratio"], fig["wall_ratio"])
        report.rows.append(
            Row(
                f"{fig['shape']}, concurrency {CONCURRENCY}: added CPU / FFmpeg CPU; "
                "added wall / job render wall",
                f"{100 * fig['cpu_ratio']:.1f} %; {100 * fig['wall_ratio']:.1f} % "
                f"({fig['measure_ms_per_output']:.0f} ms per output, sheet {fig['sheet_ms']:.0f}"
                f" ms, renders {fig['render_wall_s']:.2f} s)",
                "≤ 5 %",
                worst <= TARGET,
            )
        )
    report.rows.append(Row("one-off import of numpy, Pillow, imagehash/scipy", f"{imports:.2f} s"))
    report.data = {"shapes": figures, "import_s": imports, "rounds": rounds}
    return report


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
