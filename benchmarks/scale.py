"""Scale: one job of 10,000 variations of a tiny clip, through many continue-as-new runs.

Measures wall time, history events per variation (all runs of the workflow id), the biggest
run's history, worker and server RSS over time, checks the `progress` query against the job
directory every second, checks the final manifest against the disk, and cancels a second big
job in its second run.

`BENCH_SCALE_VARIATIONS=<n>` runs jobs of `n` variations instead (e.g. 1000, to iterate; more
than 437, where the second job is cancelled). The figures per variation compare; the RSS
growth needs a long job to mean anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import psutil

from benchmarks.cancel import breakdown_rows, latency_rows, measure_cancel
from benchmarks.history import all_runs, task_timings
from benchmarks.plain import clip
from benchmarks.report import Context, Report, Row, fmt_s, save_chart
from benchmarks.stack import Stack, WorkerProcess, new_job_id, request
from varia import media, names
from varia.models import DEFAULT_CHUNK_SIZE, JobResult, Progress
from varia.workflows import VariationJob

NAME = "scale"
CONCURRENCY = 4
HISTORY_LIMIT = 51_200
"""Temporal's default hard limit of events in one run's history."""
SUGGEST_AT = 4_096
"""Where Temporal starts suggesting continue-as-new (events)."""


def _outputs_on_disk(job_dir: Path) -> int:
    """Final outputs in the job directory (not temporary or varia's own files)."""
    try:
        with os.scandir(job_dir) as entries:
            return sum(1 for e in entries if e.name.endswith(".mp4") and not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def _rss_growth(rss: list[tuple[int, float]], total: int) -> float:
    """MiB per 1,000 variations between the medians of RSS at 20-40% and at 80-100% done."""
    mid = [mb for done, mb in rss if 0.2 * total <= done < 0.4 * total]
    end = [mb for done, mb in rss if done >= 0.8 * total]
    if not mid or not end:
        return float("nan")
    return (statistics.median(end) - statistics.median(mid)) / (0.6 * total / 1000)


def _cpu_seconds(worker_pid: int, server_pid: int) -> dict[str, float]:
    """CPU seconds so far of the worker, its reaped children (FFmpeg), and the dev server."""
    worker = psutil.Process(worker_pid).cpu_times()
    server = psutil.Process(server_pid).cpu_times() if server_pid else None
    return {
        "worker": worker.user + worker.system,
        "ffmpeg": worker.children_user + worker.children_system,
        "server": server.user + server.system if server else float("nan"),
    }


def _problems(sample: dict[str, Any], previous: dict[str, Any] | None, total: int) -> list[str]:
    """What is wrong with one `progress` answer, judged against the disk and the last answer."""
    found = []
    done = sample["completed"] + sample["failed"]
    if sample["total"] != total:
        found.append(f"total {sample['total']} != {total} (state {sample['state']})")
    expected = round(100.0 * done / total, 1)
    expected = min(expected, 99.9) if done < total else expected  # 100 only once all finished
    if sample["percent"] != expected and sample["total"] == total:
        found.append(f"percent {sample['percent']} does not match {done}/{total}")
    if sample["running"] > CONCURRENCY:
        found.append(f"running {sample['running']} > concurrency {CONCURRENCY}")
    if sample["completed"] > sample["disk_after"]:
        found.append(f"completed {sample['completed']} > outputs on disk {sample['disk_after']}")
    if sample["disk_before"] > sample["completed"] + sample["running"]:
        found.append(
            f"outputs on disk {sample['disk_before']} > completed {sample['completed']} "
            f"+ running {sample['running']}"
        )
    if previous is not None and sample["completed"] < previous["completed"]:
        found.append(f"completed went back from {previous['completed']} to {sample['completed']}")
    return found


async def _sample_progress(
    stack: Stack, worker: WorkerProcess, job_id: str, total: int, stop: asyncio.Event
) -> list[dict[str, Any]]:
    """Every second: progress query bracketed by two counts of the outputs on disk, and RSS."""
    handle = stack.client.get_workflow_handle(job_id, result_type=JobResult)
    job_dir = stack.job_dir(job_id)
    server = psutil.Process(stack.server.process.pid) if stack.server.process else None
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    while not stop.is_set():
        disk_before = await asyncio.to_thread(_outputs_on_disk, job_dir)
        asked = time.monotonic()
        try:
            answer: Progress = await handle.query(VariationJob.progress)
        except Exception as err:  # a query can fail around a run's hand-over: count it
            samples.append({"t": asked - started, "error": str(err)[:200]})
            await asyncio.sleep(1.0)
            continue
        entry: dict[str, Any] = {
            "t": asked - started,
            "query_s": time.monotonic() - asked,
            "state": answer.state,
            "total": answer.total,
            "completed": answer.completed,
            "failed": answer.failed,
            "running": answer.running,
            "percent": answer.percent,
            "disk_before": disk_before,
            "disk_after": await asyncio.to_thread(_outputs_on_disk, job_dir),
            "worker_rss_mb": worker.rss_mb(),
            "server_rss_mb": server.memory_info().rss / 2**20 if server else float("nan"),
        }
        previous = next((s for s in reversed(samples) if "error" not in s), None)
        entry["problems"] = _problems(entry, previous, total)
        samples.append(entry)
        try:
            async with asyncio.timeout(1.0):
                await stop.wait()
        except TimeoutError:
            pass
    return samples


def _manifest_check(job_dir: Path, total: int, decode_sample: int) -> dict[str, Any]:
    """The manifest against the disk (outputs; the contact sheets it lists are varia's own);
    a seeded sample of outputs must pass `check_output`."""
    manifest = json.loads((job_dir / names.MANIFEST_NAME).read_text())
    listed = {o["path"] for o in manifest["outputs"]}
    sheets = {s["path"] for s in manifest.get("sheets") or []}
    on_disk = {
        e.name
        for e in os.scandir(job_dir)
        if e.name != names.MANIFEST_NAME
        and not e.name.startswith(names.OWN_PREFIX)
        and e.name not in sheets
    }
    rng = random.Random(1)
    sample = rng.sample(manifest["outputs"], min(decode_sample, len(manifest["outputs"])))
    bad = 0
    for entry in sample:
        try:
            media.check_output(str(job_dir / entry["path"]), entry["duration_s"], 0.05)
        except media.MediaError:
            bad += 1
    return {
        "state": manifest["state"],
        "outputs": len(listed),
        "distinct_variations": len({o["variation"] for o in manifest["outputs"]}),
        "disk_matches_manifest": listed == on_disk,
        "decoded_sample": len(sample),
        "sample_failures": bad,
        "sheets": sorted(sheets),
        "manifest_bytes": (job_dir / names.MANIFEST_NAME).stat().st_size,
        "expected": total,
    }


async def run(ctx: Context) -> Report:
    """Run the big job to the end, then cancel a second one in its second run."""
    default = 500 if ctx.quick else 10_000  # quick: past 437, where the cancel is sent
    total = int(os.environ.get("BENCH_SCALE_VARIATIONS") or default)
    async with Stack(NAME) as stack:
        worker = await stack.start_worker(max_renders=CONCURRENCY)
        tiny = clip(stack.root / "clips", "tiny", seconds=0.2, size="64x64", audio=False)
        job = request([tiny.path], total, stack.out_dir, concurrency=CONCURRENCY)
        job_id = new_job_id(NAME)
        stop = asyncio.Event()
        rss_start = worker.rss_mb()
        cpu_start = _cpu_seconds(
            worker.pid, stack.server.process.pid if stack.server.process else 0
        )
        started = time.monotonic()
        handle = await stack.start_job(worker, job, job_id)
        sampler = asyncio.create_task(_sample_progress(stack, worker, job_id, total, stop))
        result = await stack.client.get_workflow_handle(job_id, result_type=JobResult).result()
        wall = time.monotonic() - started
        cpu_end = _cpu_seconds(worker.pid, stack.server.process.pid if stack.server.process else 0)
        cpu = {key: cpu_end[key] - cpu_start[key] for key in cpu_end}
        stop.set()
        samples = await sampler
        runs = await all_runs(stack.client, job_id)
        final = await stack.client.get_workflow_handle(job_id).query(VariationJob.progress)
        check = await asyncio.to_thread(_manifest_check, stack.job_dir(job_id), total, 200)
        # a second job of the same size, cancelled once it is well into its second run
        cancel_id = new_job_id(f"{NAME}-cancel")
        with stack.watch(worker, cancel_id) as watch:
            second = await stack.start_job(worker, job, cancel_id)
            await _wait_completed(stack, cancel_id, DEFAULT_CHUNK_SIZE + 37)
            cancel = await measure_cancel(stack, worker, second, watch)
        cancel_runs = len(await all_runs(stack.client, cancel_id))
        cancel_check = await asyncio.to_thread(_manifest_check, stack.job_dir(cancel_id), total, 50)
    return _report(
        total,
        result,
        wall,
        samples,
        runs,
        final,
        check,
        cancel,
        cancel_runs,
        cancel_check,
        rss_start,
        handle.id,
        cpu,
    )


async def _wait_completed(stack: Stack, job_id: str, at_least: int) -> None:
    handle = stack.client.get_workflow_handle(job_id)
    while True:
        try:
            progress: Progress = await handle.query(VariationJob.progress)
            if progress.completed >= at_least:
                return
        except Exception:  # a run hand-over: ask again
            pass
        await asyncio.sleep(0.2)


def _report(
    total: int,
    result: JobResult,
    wall: float,
    samples: list[dict[str, Any]],
    runs: list[Any],
    final: Progress,
    check: dict[str, Any],
    cancel: dict[str, Any],
    cancel_runs: int,
    cancel_check: dict[str, Any],
    rss_start: float,
    job_id: str,
    cpu: dict[str, float],
) -> Report:
    events = [len(r.events) for r in runs]
    timings: dict[str, list[float]] = {}
    for one in runs:
        for key, values in task_timings(one.events).items():
            timings.setdefault(key, []).extend(values)
    med = {key: statistics.median(v) if v else float("nan") for key, v in timings.items()}
    sizes = [r.size_bytes for r in runs]
    good = [s for s in samples if "error" not in s]
    errors = [s for s in samples if "error" in s]
    problems = [p for s in good for p in s["problems"]]
    rss = [(s["completed"], s["worker_rss_mb"]) for s in good]
    growth = _rss_growth(rss, total)
    per_variation_ms = {key: 1000 * value / total for key, value in cpu.items()}
    rss_values = [m for _, m in rss]
    ok_complete = result.state == "completed" and result.completed == total
    report = Report(
        NAME,
        f"Scale: one job of {total:,} variations of a 0.2 s 64x64 clip "
        f"(no audio), concurrency {CONCURRENCY}, chunk_size {DEFAULT_CHUNK_SIZE}",
    )
    report.rows = [
        Row(
            "job completes",
            f"{result.state}, {result.completed:,} of {total:,}",
            "completes",
            ok_complete,
        ),
        Row("wall time; variations per second", f"{fmt_s(wall)}; {total / wall:.1f}/s"),
        Row("workflow runs (continue-as-new)", str(len(runs))),
        Row(
            "CPU per variation: FFmpeg / worker / dev server",
            f"{per_variation_ms['ffmpeg']:.0f} / {per_variation_ms['worker']:.0f} / "
            f"{per_variation_ms['server']:.0f} ms (cores x wall: "
            f"{1000 * (os.cpu_count() or 1) * wall / total:.0f} ms per variation)",
        ),
        Row(
            "per render (median): activity run; dispatch",
            f"{fmt_s(med['render_run'])}; {fmt_s(med['render_dispatch'])}",
        ),
        Row(
            "workflow tasks per variation; median run; median wait",
            f"{len(timings['wft_run']) / total:.2f}; {fmt_s(med['wft_run'])}; "
            f"{fmt_s(med['wft_wait'])}",
        ),
        Row(
            "history per variation (all runs): events; bytes",
            f"{sum(events) / total:.2f}; {sum(sizes) / total:,.0f}",
        ),
        Row(
            "largest run history: events; bytes",
            f"{max(events):,}; {max(sizes) / 1024:.0f} KiB",
            f"< {SUGGEST_AT:,} events (limit {HISTORY_LIMIT:,})",
            max(events) < SUGGEST_AT,
        ),
        Row(
            "worker RSS start / max / end",
            f"{rss_start:.0f} / {max(rss_values, default=0):.0f} / "
            f"{rss_values[-1] if rss_values else float('nan'):.0f} MiB",
        ),
        Row(
            "worker RSS growth, 20-40% -> 80-100% done (medians)",
            f"{growth:+.2f} MiB per 1,000 variations",
            "flat (< 1 MiB per 1,000)",
            abs(growth) < 1.0,
        ),
        Row(
            "progress answers checked against the disk",
            f"{len(good)} answers, {len(problems)} problems, {len(errors)} failed queries",
            "0 problems",
            not problems,
        ),
        Row(
            "progress after the job closed",
            f"{final.state}, {final.completed:,}/{final.total:,}",
            "completed, total",
            final.completed == total and final.state == "completed",
        ),
        Row(
            "manifest lists every output on disk; sample decodes",
            f"{check['outputs']:,} listed, match {check['disk_matches_manifest']}, "
            f"{check['decoded_sample'] - check['sample_failures']}/{check['decoded_sample']} ok, "
            f"{check['manifest_bytes'] / 2**20:.1f} MiB",
            "all",
            check["disk_matches_manifest"]
            and check["outputs"] == total
            and not check["sample_failures"],
        ),
        *latency_rows([cancel], prefix=f"cancel in run {cancel_runs} of a second job: "),
        *breakdown_rows([cancel]),
        Row(
            "  cancelled job: manifest matches disk, kept outputs",
            f"{cancel_check['disk_matches_manifest']}, {cancel_check['outputs']} "
            f"(progress said {cancel['completed']})",
            "match",
            cancel_check["disk_matches_manifest"],
        ),
    ]
    if problems:
        report.notes.append("progress problems (first 5): " + "; ".join(problems[:5]))
    report.data = {
        "job_id": job_id,
        "total": total,
        "wall_s": wall,
        "chunk_size": DEFAULT_CHUNK_SIZE,
        "runs": [{"events": e, "bytes": b} for e, b in zip(events, sizes, strict=True)],
        "task_medians_s": med,
        "cpu_ms_per_variation": per_variation_ms,
        "samples": samples,
        "manifest": check,
        "cancel": cancel,
        "cancel_runs": cancel_runs,
        "cancel_manifest": cancel_check,
        "rss_growth_mb_per_1000": growth,
    }
    return report


def chart(report: Report, path: Path) -> None:
    """Progress and RSS over time (left); history events per run (right)."""
    data = report.data
    good = [s for s in data["samples"] if "error" not in s]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    ts = [s["t"] for s in good]
    left.plot(ts, [s["completed"] for s in good], color="C0", label="completed (progress)")
    left.plot(ts, [s["disk_after"] for s in good], color="C0", ls=":", label="outputs on disk")
    left.set_xlabel("seconds since start")
    left.set_ylabel("variations")
    rss = left.twinx()
    rss.plot(ts, [s["worker_rss_mb"] for s in good], color="C3", label="worker RSS")
    rss.plot(ts, [s["server_rss_mb"] for s in good], color="C2", label="dev server RSS")
    rss.set_ylabel("MiB")
    rss.set_ylim(bottom=0)
    lines = left.get_legend_handles_labels()
    more = rss.get_legend_handles_labels()
    left.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    left.set_title(f"{data['total']:,} variations in {data['wall_s']:.0f} s", fontsize=10)
    runs = data["runs"]
    right.bar(range(1, len(runs) + 1), [r["events"] for r in runs])
    right.axhline(SUGGEST_AT, color="C1", ls="--", lw=1, label="continue-as-new suggested")
    right.set_xlabel("workflow run")
    right.set_ylabel("history events")
    right.set_title(
        f"{sum(r['events'] for r in runs) / data['total']:.2f} events per variation, "
        f"chunk_size {data['chunk_size']}",
        fontsize=10,
    )
    right.legend(fontsize=7)
    save_chart(fig, path)
