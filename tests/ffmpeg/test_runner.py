"""The render loop with the real FFmpeg: progress, cancellation, stall and interrupt."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import psutil

from tests.conftest import Clips
from tests.helpers import wait_for
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.ffmpeg.progress import ProgressReport
from varia.ffmpeg.runner import run_ffmpeg
from varia.media import probe
from varia.models import Recipe, RenderTask
from varia.processes import ProcessIdentity


def render_argv(clip: Path, out: Path) -> list[str]:
    task = RenderTask(
        job_dir=str(out.parent),
        input_index=0,
        variation=0,
        media=probe(str(clip)),
        recipe=Recipe(zoom=1.05, speed=1.02),
        output_name=out.name,
        threads=1,
    )
    return build_render_argv(Settings().ffmpeg_path(), task, out)


async def test_run_to_the_end_reports_progress(clips: Clips, tmp_path: Path) -> None:
    reports: list[ProgressReport] = []
    outcome = await run_ffmpeg(
        render_argv(clips.short, tmp_path / "o.mp4"),
        on_tick=lambda report, _id: reports.append(report) if report else None,
    )
    assert outcome.returncode == 0 and outcome.stop_reason is None and not outcome.cancelled
    assert outcome.last_report is not None and outcome.last_report.ended
    assert (tmp_path / "o.mp4").stat().st_size > 0


async def test_cancel_stops_ffmpeg_with_q(clips: Clips, tmp_path: Path) -> None:
    identities: list[ProcessIdentity] = []
    percents: list[float] = []

    def tick(report: ProgressReport | None, identity: ProcessIdentity) -> None:
        identities.append(identity)
        if report is not None:
            percents.append(report.percent(20.0))

    run = asyncio.create_task(
        run_ffmpeg(render_argv(clips.long, tmp_path / "o.mp4"), on_tick=tick, tick_s=0.05)
    )
    await wait_for(lambda: percents and percents[-1] > 0, what="FFmpeg progress")
    run.cancel()
    outcome = await run
    assert outcome.cancelled and outcome.stop_stage == "q" and outcome.returncode == 0
    assert not identities[-1].is_alive()


async def test_stop_event_ends_the_run_without_waiting_for_a_tick(
    clips: Clips, tmp_path: Path
) -> None:
    """A pushed cancel wakes the loop: with an hour-long tick only the event can stop it."""
    spawned: list[ProcessIdentity] = []
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_ffmpeg(
            render_argv(clips.long, tmp_path / "o.mp4"),
            on_tick=lambda *_: None,
            tick_s=3600.0,
            on_spawn=spawned.append,
            stop=stop,
        )
    )
    await wait_for(lambda: (tmp_path / "o.mp4").exists(), what="FFmpeg to open its output")
    stop.set()
    outcome = await run
    assert outcome.cancelled and outcome.stop_reason == "cancel pushed"
    assert outcome.stop_stage == "q"  # it was still running: the 20 s clip was not done
    assert not spawned[0].is_alive()


async def test_many_cancels_at_random_moments_are_never_lost(clips: Clips, tmp_path: Path) -> None:
    """Each cancel must end the run (the wait_for trap would let FFmpeg run to its end)."""
    for attempt in range(12):
        ticks: list[int] = []
        run = asyncio.create_task(
            run_ffmpeg(
                render_argv(clips.long, tmp_path / f"o{attempt}.mp4"),
                on_tick=lambda *_, ticks=ticks: ticks.append(1),
                tick_s=0.01 + 0.01 * (attempt % 4),
            )
        )
        enough = attempt % 5
        await wait_for(lambda ticks=ticks, enough=enough: len(ticks) > enough, what="ticks")
        run.cancel()
        outcome = await run
        assert outcome.cancelled, f"attempt {attempt}: the cancel was lost"
        last = outcome.last_report  # `q` ends with progress=end too: check how far it got
        assert last is None or (last.out_time_s or 0) < 19.0


def stalling_ffmpeg(tmp_path: Path, *, ignore_signals: bool) -> Path:
    script = tmp_path / "stalls"
    trap = "trap '' TERM INT\n" if ignore_signals else ""
    script.write_text(
        f"#!/bin/bash\n{trap}echo progress=continue\nwhile true; do sleep 0.1; done\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


async def test_stall_is_detected_and_escalates_to_sigkill(tmp_path: Path) -> None:
    outcome = await run_ffmpeg(
        [str(stalling_ffmpeg(tmp_path, ignore_signals=True))],
        on_tick=lambda *_: None,
        stall_timeout_s=0.5,
        stage_timeout_s=0.3,
        tick_s=0.05,
    )
    assert outcome.stop_reason is not None and outcome.stop_reason.startswith("stalled")
    assert outcome.stop_stage == "kill"


def finishing_ffmpeg(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in FFmpeg that reports advancing progress until a `go` file appears, then exits 0."""
    script, go = tmp_path / "finishes", tmp_path / "go"
    script.write_text(
        "#!/bin/bash\nframe=0\n"
        f"while [ ! -e {go} ]; do frame=$((frame+1)); "
        "printf 'frame=%d\\nout_time_us=%d\\nprogress=continue\\n' $frame $((frame*40000)); "
        "sleep 0.05; done\nexit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, go


def has_exited(pid: int) -> bool:
    """Whether `pid` has exited (a zombie, or already reaped by asyncio's watcher thread)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_worker_frozen_past_the_stall_timeout_does_not_blame_ffmpeg(
    tmp_path: Path,
) -> None:
    """A worker stopped (SIGSTOP, a suspended VM) while its FFmpeg ran on and finished used to
    call it stalled on resuming ("stalled ...; ended by exited") and fail a render that was
    whole. The freeze is the event loop held by `on_tick` until FFmpeg has exited and the
    stall timeout has passed, as a stopped process would be."""
    script, go = finishing_ffmpeg(tmp_path)
    stall_timeout_s = 0.5
    frozen: list[bool] = []

    def freeze_once(report: ProgressReport | None, identity: ProcessIdentity) -> None:
        if report is None or frozen:
            return
        frozen.append(True)
        go.touch()
        since, deadline = time.monotonic(), time.monotonic() + 30
        while not has_exited(identity.pid) or time.monotonic() - since < 3 * stall_timeout_s:
            assert time.monotonic() < deadline, "the stand-in FFmpeg did not exit"
            time.sleep(0.02)  # the loop is frozen on purpose: nothing else may run

    outcome = await run_ffmpeg(
        [str(script)], on_tick=freeze_once, stall_timeout_s=stall_timeout_s, tick_s=0.05
    )
    assert frozen
    assert (outcome.returncode, outcome.stop_reason, outcome.stop_stage) == (0, None, None)


async def test_interrupt_stops_with_its_reason(tmp_path: Path) -> None:
    outcome = await run_ffmpeg(
        [str(stalling_ffmpeg(tmp_path, ignore_signals=False))],
        on_tick=lambda *_: None,
        interrupt=lambda: "worker shutting down",
        stage_timeout_s=2.0,  # room for a loaded box to reap the SIGTERMed child (0.3 s was not)
        tick_s=0.05,
    )
    assert outcome.stop_reason == "worker shutting down"
    assert outcome.stop_stage == "term"


async def test_a_cancel_bounds_q_and_sigterm_by_the_cancel_stage_timeout(tmp_path: Path) -> None:
    """A cancelled render's partial output is deleted: its `q` and SIGTERM stages wait the
    cancel bound, asked when the cancel arrives (with the hour-long stage bound the stop
    would hang), and the other stops never ask it."""
    asked: list[str] = []

    def cancel_bound() -> float:
        asked.append("cancel")
        return 0.05

    ticks: list[int] = []
    run = asyncio.create_task(
        run_ffmpeg(
            [str(stalling_ffmpeg(tmp_path, ignore_signals=True))],
            on_tick=lambda *_: ticks.append(1),
            stall_timeout_s=3600.0,
            stage_timeout_s=3600.0,
            cancel_stage_timeout_s=cancel_bound,
            tick_s=0.05,
        )
    )
    await wait_for(lambda: len(ticks) > 1, what="ticks")
    assert asked == []
    run.cancel()
    outcome = await run
    assert outcome.cancelled and outcome.stop_stage == "kill" and asked == ["cancel"]

    interrupted = await run_ffmpeg(
        [str(stalling_ffmpeg(tmp_path, ignore_signals=False))],
        on_tick=lambda *_: None,
        interrupt=lambda: "worker shutting down",
        stage_timeout_s=0.3,
        cancel_stage_timeout_s=cancel_bound,
        tick_s=0.05,
    )
    assert interrupted.stop_stage == "term" and asked == ["cancel"]
