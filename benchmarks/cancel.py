"""Cancel latency: cancel request → every FFmpeg of the job exited, and → workflow closed with
cleanup done, over many cancels at seeded random points of a job's life."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.history import cancel_path, scheduled_after_cancel
from benchmarks.plain import clip
from benchmarks.report import Context, Report, Row, fmt_s, save_chart
from benchmarks.stack import (
    FfmpegWatch,
    JobHandle,
    Stack,
    WorkerProcess,
    cancel_and_wait,
    new_job_id,
    request,
)
from benchmarks.stats import summarize
from varia import names

NAME = "cancel"
SWEEP: dict[str, dict[str, str]] = {
    "stop stages 2 s (graceful, as a shutdown)": {"VARIA_CANCEL_STAGE_TIMEOUT": "2.0"},
    "stop stages 0.1 s (the default until 2026-12-01)": {"VARIA_CANCEL_STAGE_TIMEOUT": "0.1"},
    "no push, heartbeats 0.2 s": {"VARIA_PUSH_CANCEL": "false", "BENCH_HEARTBEAT_CAP_S": "0.2"},
}
"""Worker settings tried after the main trials (which use the worker's own defaults: pushed
cancels, `VARIA_CANCEL_STAGE_TIMEOUT` 0.05 s, a 0.25 s stats period, 5 s heartbeats)."""
EXITED_P50, EXITED_MAX, CLOSED_P50 = 0.35, 1.0, 0.6
TARGET_CANCELS = 20
"""Cancels behind each set of target rows (every slot busy; worker idle): a max over fewer says
little."""
SWEEP_CANCELS = 4
"""Cancels per sweep setting: those rows only compare settings, whose p50s differ by far more
than the spread of 4 cancels (stop stages 2 s: about 1.1 s; no push: about 0.9 s), except 0.1 s
stages, about 0.1 s slower than the default: a rough check beside the target rows."""


async def measure_cancel(
    stack: Stack, worker: WorkerProcess, handle: JobHandle, watch: FfmpegWatch
) -> dict[str, Any]:
    """Cancel a running job; time until its FFmpeg are gone and until it closed cleaned up.

    The worker's stop log splits the first part: the cancel reaching the render activity
    (through a heartbeat response) and FFmpeg stopping once asked (`q` first).
    """
    latest = stack.client.get_workflow_handle(handle.id)  # the current run, whichever it is
    watch.poll()
    alive = watch.alive()
    cancelled_wall = time.time()
    state, cancelled_at, closed_at = await cancel_and_wait(latest)
    await asyncio.sleep(0.3)  # an FFmpeg that appeared late would show up now
    watch.poll()
    last_exit = watch.last_exit()  # None while one still runs: then measure up to now
    if not watch.intervals():
        exited = 0.0  # no FFmpeg ever ran: nothing to stop
    else:
        exited = max(0.0, (last_exit or time.monotonic()) - cancelled_at)
    spawned_after = sum(1 for begin, _ in watch.intervals() if begin > cancelled_at)
    manifest = json.loads((stack.job_dir(handle.id) / names.MANIFEST_NAME).read_text())
    stops = worker.stops_since(cancelled_wall)
    history = await latest.fetch_history()
    first_stop = min((s["begin"] for s in stops), default=float("nan"))
    path = cancel_path(list(history.events))
    pushed = min(worker.pushes_since(cancelled_wall), default=nan)
    steps = {f"{key}_s": at - cancelled_wall for key, at in path.items()}
    return {
        **steps,
        "pushed_s": pushed - cancelled_wall,
        "q_written_s": first_stop - cancelled_wall,
        "reached_activity_s": first_stop - cancelled_wall,
        # the same end, by the worker's own clock (FFmpeg reaped), with nothing polling /proc
        "exited_by_log_s": max((s["end"] for s in stops), default=float("nan")) - cancelled_wall,
        "stop_s": max((s["end"] for s in stops), default=float("nan")) - first_stop,
        "stages": [s["stage"] for s in stops],
        "alive_at_cancel": alive,
        "exited_s": exited,
        "closed_s": closed_at - cancelled_at,
        "state": state,
        "manifest_state": manifest["state"],
        "completed": manifest["completed"],
        "spawned_after_cancel": spawned_after,
        "scheduled_after_cancel": scheduled_after_cancel(list(history.events)),
        "still_running_after_close": watch.alive(),
    }


def latency_rows(trials: list[dict[str, Any]], prefix: str = "") -> list[Row]:
    """p50/p95/max rows of exited and closed latency against the targets."""
    exited = summarize([t["exited_s"] for t in trials])
    closed = summarize([t["closed_s"] for t in trials])
    return [
        Row(
            f"{prefix}cancel -> every FFmpeg exited p50 / p95 / max",
            f"{fmt_s(exited['p50'])} / {fmt_s(exited['p95'])} / {fmt_s(exited['max'])}",
            f"p50 <= {EXITED_P50} s, max <= {EXITED_MAX} s",
            exited["p50"] <= EXITED_P50 and exited["max"] <= EXITED_MAX,
        ),
        Row(
            f"{prefix}  same, by the worker's stop log (FFmpeg reaped; no /proc polling)",
            _triple(
                [t["exited_by_log_s"] for t in trials if _finite(t.get("exited_by_log_s", nan))]
            ),
        ),
        Row(
            f"{prefix}cancel -> workflow closed, cleaned up p50 / p95 / max",
            f"{fmt_s(closed['p50'])} / {fmt_s(closed['p95'])} / {fmt_s(closed['max'])}",
            f"p50 <= {CLOSED_P50} s",
            closed["p50"] <= CLOSED_P50,
        ),
    ]


STEPS = (
    ("cancel_requested_s", "server recorded the cancel request (history)"),
    ("wft_started_s", "workflow task started (history)"),
    ("wft_completed_s", "workflow task completed: stop queues read, push scheduled (history)"),
    ("stop_scheduled_s", "stop_renders scheduled (history)"),
    ("stop_started_s", "stop_renders started (history)"),
    ("pushed_s", "the worker set the renders' stop events (its log)"),
    ("q_written_s", "`q` written to the first FFmpeg (its log)"),
    ("exited_by_log_s", "the last FFmpeg reaped (its log)"),
)
"""A cancel's steps, each in seconds after the client sent it (one host, one clock)."""


def breakdown_rows(trials: list[dict[str, Any]], prefix: str = "  ") -> list[Row]:
    """Where a cancel's time goes, step by step; and the stage that ended each FFmpeg."""
    stop = summarize([t["stop_s"] for t in trials if _finite(t["stop_s"])])
    stages = [stage for t in trials for stage in t["stages"]]
    rows = []
    for key, label in STEPS:
        values = summarize([t[key] for t in trials if _finite(t.get(key, nan))])
        rows.append(
            Row(
                f"{prefix}cancel -> {label} p50 / max",
                f"{fmt_s(values['p50'])} / {fmt_s(values['max'])}",
            )
        )
    return [
        *rows,
        Row(
            f"{prefix}FFmpeg exits once asked (`q` written -> last reaped) p50 / max",
            f"{fmt_s(stop['p50'])} / {fmt_s(stop['max'])}",
        ),
        Row(
            f"{prefix}stages that ended FFmpeg (q / term / kill / had exited)",
            " / ".join(str(stages.count(s)) for s in ("q", "term", "kill", "exited")),
        ),
    ]


nan = float("nan")


def _triple(values: list[float]) -> str:
    """p50 / p95 / max of `values` as text (n/a when there are none)."""
    stats = summarize(values)
    return f"{fmt_s(stats['p50'])} / {fmt_s(stats['p95'])} / {fmt_s(stats['max'])}"


def _finite(value: float) -> bool:
    return value == value


async def cancel_trials(
    stack: Stack,
    worker: WorkerProcess,
    source: Path,
    count: int,
    rng: random.Random,
    *,
    variations: int = 6,
    concurrency: int = 2,
) -> list[dict[str, Any]]:
    """`count` jobs (6 variations at concurrency 2: every render slot of the 2-slot worker
    busy), each cancelled 0-4 s after its start."""
    trials = []
    for index in range(count):
        delay = rng.uniform(0.0, 4.0)
        job_id = new_job_id(NAME)
        job = request([source], variations, stack.out_dir, concurrency=concurrency, seed=index)
        with stack.watch(worker, job_id) as watch:
            handle = await stack.start_job(worker, job, job_id)
            await asyncio.sleep(delay)
            trial = await measure_cancel(stack, worker, handle, watch)
        trial["delay_s"] = delay
        trials.append(trial)
    return trials


def rows(
    trials: list[dict[str, Any]],
    sweep: dict[str, list[dict[str, Any]]],
    idle: list[dict[str, Any]] | None = None,
) -> list[Row]:
    """Rows for the main trials and the sweep (pure: a saved report can be recomputed)."""
    during = [t for t in trials if t["alive_at_cancel"]]
    table = [
        *latency_rows(trials),
        *(latency_rows(idle, prefix="[one render, a slot free] ") if idle else []),
        *breakdown_rows(trials),
        Row("cancels that found FFmpeg running", f"{len(during)} of {len(trials)}"),
        Row(
            "renders scheduled after the workflow saw the cancel (history)",
            str(sum(t["scheduled_after_cancel"] for t in trials)),
            "0",
            all(t["scheduled_after_cancel"] == 0 for t in trials),
        ),
        Row(
            "FFmpeg spawned after the cancel was sent (render already dispatched)",
            str(sum(t["spawned_after_cancel"] for t in trials)),
        ),
        Row(
            "FFmpeg still running after the workflow closed",
            str(sum(t["still_running_after_close"] for t in trials)),
            "0",
            all(t["still_running_after_close"] == 0 for t in trials),
        ),
        Row(
            "jobs ending cancelled / completed (completion wins)",
            f"{sum(t['state'] == 'cancelled' for t in trials)} / "
            f"{sum(t['state'] == 'completed' for t in trials)}",
        ),
    ]
    for label, more in sweep.items():
        exited = summarize([t["exited_s"] for t in more])
        reached = summarize(
            [t["reached_activity_s"] for t in more if _finite(t["reached_activity_s"])]
        )
        stages = [stage for t in more for stage in t["stages"]]
        table.append(
            Row(
                f"{label} ({len(more)} cancels): exited p50 / max; reached p50; stages q/term/kill",
                f"{fmt_s(exited['p50'])} / {fmt_s(exited['max'])}; {fmt_s(reached['p50'])}; "
                + "/".join(str(stages.count(s)) for s in ("q", "term", "kill")),
            )
        )
    return table


async def run(ctx: Context) -> Report:
    """Cancel jobs at seeded random points; every trial must end with no FFmpeg left.

    Then the same at other heartbeat throttle caps, to show what the cap costs in latency.
    """
    count, idle_count = (4, 2) if ctx.quick else (TARGET_CANCELS, TARGET_CANCELS)
    sweep_configs = {} if ctx.quick else SWEEP
    rng = random.Random(5)
    async with Stack(NAME) as stack:
        source = clip(stack.root / "clips", "mid", seconds=12, size="1280x720").path
        worker = await stack.start_worker(max_renders=2)
        trials = await cancel_trials(stack, worker, source, count, rng)
        idle = await cancel_trials(
            stack, worker, source, idle_count, rng, variations=1, concurrency=1
        )
        await stack.stop_worker(worker)
        sweep: dict[str, list[dict[str, Any]]] = {}
        for label, env in sweep_configs.items():
            worker = await stack.start_worker(max_renders=2, env=env)
            sweep[label] = await cancel_trials(stack, worker, source, SWEEP_CANCELS, rng)
            await stack.stop_worker(worker)
    report = Report(
        NAME,
        f"Cancel latency: {len(trials)} cancels at random points "
        "(seed 5, 0-4 s after start) of 6-variation jobs of a 12 s 1280x720 clip, "
        "concurrency 2 (every render slot busy), the worker's defaults",
    )
    report.rows = rows(trials, sweep, idle)
    report.data = {"trials": trials, "sweep": sweep, "idle": idle}
    return report


def draw_latencies(axis: Any, trials: list[dict[str, Any]], title: str) -> None:
    """Exited and closed latency against the moment of the cancel, with the targets."""
    xs = [t.get("delay_s", i) for i, t in enumerate(trials)]
    axis.scatter(xs, [t["exited_s"] for t in trials], label="every FFmpeg exited", marker="o")
    axis.scatter(
        xs, [t["closed_s"] for t in trials], label="workflow closed, cleaned up", marker="x"
    )
    axis.axhline(EXITED_P50, color="C0", ls=":", lw=1, label=f"exited p50 target {EXITED_P50} s")
    axis.axhline(EXITED_MAX, color="C0", ls="--", lw=1, label=f"exited max target {EXITED_MAX} s")
    axis.axhline(CLOSED_P50, color="C1", ls=":", lw=1, label=f"closed p50 target {CLOSED_P50} s")
    axis.set_ylabel("seconds after the cancel request")
    axis.set_title(title, fontsize=10)
    axis.set_ylim(bottom=0)
    axis.legend(fontsize=6, loc="best", framealpha=0.6)


def chart(report: Report, path: Path) -> None:
    """Latency of every cancel by when it was sent; and exited latency per throttle cap."""
    sweep = report.data["sweep"]
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(14 if sweep else 8, 4.8), squeeze=False)
    draw_latencies(axes[0][0], report.data["trials"], "cancel latency, worker defaults")
    axes[0][0].set_xlabel("cancel sent this long after the job started, s")
    if sweep:
        _draw_sweep(axes[0][1], sweep)
    save_chart(fig, path)


def _draw_sweep(axis: Any, sweep: dict[str, list[dict[str, Any]]]) -> None:
    """p50 bars (and max dots) of exited and reached latency per sweep configuration."""
    xs = list(range(len(sweep)))
    for offset, key, label in (
        (-0.2, "exited_s", "every FFmpeg exited"),
        (0.2, "reached_activity_s", "cancel reached the render"),
    ):
        stats = [
            summarize([t[key] for t in trials if _finite(t[key])]) for trials in sweep.values()
        ]
        axis.bar([x + offset for x in xs], [st["p50"] for st in stats], 0.4, label=f"{label} p50")
        axis.scatter([x + offset for x in xs], [st["max"] for st in stats], color="k", s=12)
    axis.axhline(EXITED_P50, color="C0", ls=":", lw=1)
    axis.axhline(EXITED_MAX, color="C0", ls="--", lw=1)
    axis.set_xticks(xs, [label.replace(", ", "\n") for label in sweep], fontsize=8)
    axis.set_ylabel("seconds after the cancel request (dots: max)")
    axis.set_title("cancel stop stages, push", fontsize=10)
    axis.legend(fontsize=7)
