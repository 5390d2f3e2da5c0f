"""Strength bounds: re-draw a variation's recipe until its SSIM to the source fits.

Each attempt is first tried on the sampled frames only (the same filter graph, no encode: a
fraction of a render); only a recipe whose trial fits is rendered in full, and the whole
output is measured again (encoding lowers SSIM a little), so a kept output always fits. The
attempts are recorded; when none fits, the variation fails with a non-retryable `OutOfBounds`
error naming the bounds and every attempt's SSIM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from varia import errors
from varia.despite_cancel import run_to_end
from varia.ffmpeg.argv import file_url, input_options, video_filters
from varia.ffmpeg.process import ProcessIdentity, spawn, stop_child
from varia.models import Attempt, RenderHeartbeat, RenderResult, RenderTask
from varia.recipes import make_recipe
from varia.sampling import sample_times

"""Error type of a variation for which no attempted recipe fits the strength bounds."""


SEEK_TOLERANCE_S = 0.0005
"""How far before a sampled frame's timestamp the trial seeks (timestamps are rounded to the
stream's time base; frames are far more than 1 ms apart)."""


def trial_argv(ffmpeg: str, task: RenderTask, frame_times: Sequence[float]) -> list[str]:
    """An FFmpeg argv that writes the frames at `frame_times` (seconds on the stream's clock:
    the source samples' own frames), through the recipe's filter graph, stacked into one raw
    gray (luma) picture on stdout (pure).

    Each input seeks to its frame's timestamp as such (`-seek_timestamp`, not offset by the
    file's start time), so its first frame is that frame."""
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
    for t in frame_times:
        argv += [*input_options(task.media), "-seek_timestamp", "1"]
        argv += ["-ss", f"{t - SEEK_TOLERANCE_S:.6f}", "-i", file_url(task.media.path)]
    vf = video_filters(task.recipe, task.media)
    count = len(frame_times)
    chains = [f"[{i}:v:0]{vf},trim=end_frame=1,setpts=0[s{i}]" for i in range(count)]
    stack = "".join(f"[s{i}]" for i in range(count))
    graph = ";".join([*chains, f"{stack}vstack=inputs={count}[out]"])
    return [
        *argv,
        "-filter_complex",
        graph,
        "-map",
        "[out]",
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "gray",
        "pipe:1",
    ]


async def trial_ssim(ffmpeg: str, task: RenderTask) -> float:
    """The SSIM the task's recipe gives on the source's sampled frames, before any encode."""
    from varia import quality
    from varia.frames import FrameError

    label = f"{task.media.path} variation {task.variation}"
    try:
        frame_times = await asyncio.to_thread(
            quality.source_sample_times, task.media.path, task.media.duration_s
        )
    except FrameError as failure:
        raise errors.bad_input(f"{label}: the source's samples do not decode: {failure}") from None
    proc = await spawn(trial_argv(ffmpeg, task, frame_times))
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            await run_to_end(stop_child(proc, ProcessIdentity.of(proc.pid), 1.0))
        raise
    if proc.returncode != 0:
        tail = err.decode(errors="replace")[-400:]
        raise ApplicationError(f"{task.media.path}: trial of variation {task.variation}: {tail}")
    width, height = _even(task.media.width), _even(task.media.height)
    if len(out) < width * height * len(frame_times):
        shown = ", ".join(f"{t:.3f}" for t in frame_times)
        raise errors.bad_input(
            f"{label}: the strength-bounds trial got no frame from FFmpeg for the frames "
            f"shown at {shown} s, so the bounds cannot be checked"
        )
    return await asyncio.to_thread(_trial_figure, task, out)


def _trial_figure(task: RenderTask, raw: bytes) -> float:
    import numpy as np

    from varia import quality
    from varia.frames import scale_luma

    count = len(sample_times(task.media.duration_s))
    width, height = _even(task.media.width), _even(task.media.height)
    luma = np.frombuffer(raw[: width * height * count], dtype=np.uint8)
    planes = luma.reshape(count, height, width)
    trial = [scale_luma(plane) for plane in planes]
    sources = quality.source_samples(task.media.path, task.media.duration_s)
    ssim, _psnr = quality.compare(sources, trial)
    return ssim


def _even(value: int) -> int:
    return max(2, value // 2 * 2)


async def render_within_bounds(
    task: RenderTask,
    render_once: Callable[[RenderTask], Awaitable[RenderResult]],
    ffmpeg: str,
    final: Path,
) -> RenderResult:
    """Try recipes (attempt 0, 1, …) until one's rendered output fits the task's bounds."""
    bounds = task.bounds
    assert bounds is not None
    attempts: list[Attempt] = []
    for attempt in range(bounds.max_attempts):
        recipe = make_recipe(task.seed or 0, task.input_index, task.variation, attempt)
        candidate = task.model_copy(update={"recipe": recipe if attempt else task.recipe})
        activity.heartbeat(RenderHeartbeat(output=str(final.parent / task.temp_name)).model_dump())
        ssim = await trial_ssim(ffmpeg, candidate)
        if not bounds.admits(ssim):
            attempts.append(Attempt(attempt=attempt, stage="trial", ssim=ssim, accepted=False))
            continue
        result = await render_once(candidate)
        if result.quality is None:
            raise ApplicationError(
                f"{task.media.path} variation {task.variation}: the output could not be "
                "measured, so the strength bounds cannot be checked",
                type=errors.OUT_OF_BOUNDS,
                non_retryable=True,
            )
        fits = bounds.admits(result.quality.ssim)
        attempts.append(
            Attempt(attempt=attempt, stage="render", ssim=result.quality.ssim, accepted=fits)
        )
        if fits:
            return result.model_copy(update={"attempts": attempts})
        with contextlib.suppress(FileNotFoundError):
            final.unlink()
    tried = ", ".join(f"{a.ssim:.4f} ({a.stage})" for a in attempts)
    raise ApplicationError(
        f"{task.media.path} variation {task.variation}: no recipe within {bounds.describe()} "
        f"after {len(attempts)} attempt(s); SSIM of each: {tried}",
        [a.model_dump() for a in attempts],
        type=errors.OUT_OF_BOUNDS,
        non_retryable=True,
    )
