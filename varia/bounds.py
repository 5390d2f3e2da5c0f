"""Strength bounds: re-draw a variation's recipe until its SSIM to the source fits.

Each attempt is first tried on the sampled frames (`trial_ssim`): the very frames the source's
figures are measured on, each with a few frames around it, through the recipe's filter graph
and the render's own encode, measured as an output is (a fraction of a render). The encode
matters: it smooths the recipe's noise away, so unencoded frames read up to 0.18 below their
output. A recipe whose trial lies more than `TRIAL_TOLERANCE` outside the bounds is refused
unrendered; any other is rendered in full, its output measured, and that figure alone decides,
so a kept output always fits. The attempts are recorded; when none fits, the variation fails
with a non-retryable `OutOfBounds` error naming the bounds and every attempt's SSIM.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.exceptions import ApplicationError

from varia import errors, names
from varia.despite_cancel import run_to_end
from varia.ffmpeg.argv import (
    build_render_argv,
    file_url,
    input_options,
    video_filters,
    video_map,
)
from varia.ffmpeg.process import ProcessIdentity, spawn, stop_child
from varia.models import Attempt, RenderHeartbeat, RenderResult, RenderTask, StrengthBounds
from varia.recipes import make_recipe

if TYPE_CHECKING:
    import av

TRIAL_TOLERANCE = 0.06
"""How far a trial's SSIM may be from its output's measured SSIM: a recipe is refused on its
trial only when the trial lies farther than this outside the bounds (measured: within 0.058
over 180 recipes of a 2 s testsrc2 clip, 0.032 over 60 of a 2.4 s one; checked by
`tests/test_bounds.py::test_the_trial_reads_what_the_output_measures`). What is left is the
output's frame rate conversion (see the README): a speed change drops or repeats frames, so
an output's sample may show a neighbouring frame of the one its source sample shows."""
FRAMES_BEFORE = 6
"""Frames the trial encodes before each sample: x264 sets a frame's quantiser from the frames
before it (and, through its macroblock tree, those after), so a frame encoded alone comes out
of another quality than inside the output (60 recipes, on the frames their outputs show: alone
within 0.107 of the output's figure, 6 before and 6 after within 0.006)."""
FRAMES_AFTER = 6
"""Frames the trial encodes after each sample (see `FRAMES_BEFORE`)."""
SEEK_TOLERANCE_S = 0.0005
"""How far before its first frame's timestamp a window starts (timestamps are rounded to the
stream's time base)."""
ENCODER_OPTIONS = frozenset({"-c:v", "-preset", "-crf", "-tune", "-x264-params", "-threads"})
"""The render's output options the trial's encode copies (`_encoder_options`)."""


@dataclass(frozen=True)
class Window:
    """The stretch of the source the trial encodes around one sample: from `start_s` (seconds
    on the stream's clock) for `length_s`; the sample's frame is `sample_s` into it."""

    start_s: float
    length_s: float
    sample_s: float


def windows(task: RenderTask, frame_times: Sequence[float]) -> list[Window]:
    """The window around each sampled frame (`frame_times`: their timestamps) (pure)."""
    frame_s = 1.0 / task.media.fps
    before = FRAMES_BEFORE * frame_s + SEEK_TOLERANCE_S
    length = before + (FRAMES_AFTER + 0.5) * frame_s
    return [Window(t - before, length, before) for t in frame_times]


def trial_argv(ffmpeg: str, task: RenderTask, frame_times: Sequence[float]) -> list[str]:
    """The FFmpeg argv of a trial (pure): each sample's `Window` through the recipe's filter
    graph, encoded as its own stream with the render's encoder settings (`_encoder_options`),
    the sampled frame a keyframe (the render forces one at every sample time); NUT on stdout,
    each stream's timestamps counted from its window's start.

    Each input seeks to its window's start as a timestamp (`-seek_timestamp`: not offset by
    the file's start time). The speed knob is left out: it retimes frames, it changes no pixel.
    """
    media = task.media
    frame_s = 1.0 / media.fps
    vf = video_filters(task.recipe.model_copy(update={"speed": 1.0}), media)
    stream = video_map(media).removeprefix("0:")  # the render's video stream, of input i
    encoder = _encoder_options(build_render_argv(ffmpeg, task, "trial.mp4"))  # its options only
    inputs: list[str] = []
    outputs: list[str] = []
    chains: list[str] = []
    for i, window in enumerate(windows(task, frame_times)):
        inputs += [*input_options(media), "-seek_timestamp", "1", "-ss", f"{window.start_s:.6f}"]
        inputs += ["-t", f"{window.length_s:.6f}", "-i", file_url(media.path)]
        chains.append(f"[{i}:{stream}]{vf}[w{i}]")
        keyframe = window.sample_s - frame_s / 2
        outputs += ["-map", f"[w{i}]", f"-force_key_frames:v:{i}", f"{keyframe:.6f}"]
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        *inputs,
        "-filter_complex",
        ";".join(chains),
        *outputs,
        *encoder,
        "-fps_mode",
        "passthrough",
        "-enc_time_base:v",
        "demux",
        "-avoid_negative_ts",
        "disabled",
        "-f",
        "nut",
        "pipe:1",
    ]


def _encoder_options(render_argv: Sequence[str]) -> list[str]:
    """The `ENCODER_OPTIONS` of a render's argv, with their values, in its order."""
    options: list[str] = []
    for name, value in itertools.pairwise(render_argv):
        if name in ENCODER_OPTIONS:
            options += [name, value]
    return options


async def trial_ssim(ffmpeg: str, task: RenderTask) -> float:
    """The SSIM the task's recipe would measure on its output: the source samples' own frames
    through the recipe's filter graph and the render's encode (`trial_argv`), measured as the
    output's samples are."""
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
    try:
        return await asyncio.to_thread(_trial_figure, task, frame_times, out)
    except NoTrialFrame as missing:
        raise errors.bad_input(
            f"{label}: the strength-bounds trial got no frame from FFmpeg for the source's "
            f"frame at {missing.time_s:.3f} s, so the bounds cannot be checked"
        ) from None


class NoTrialFrame(Exception):
    """The trial's output lacks the frame of a sample (at `time_s` in the source)."""

    def __init__(self, time_s: float) -> None:
        super().__init__(f"no trial frame at {time_s:.3f}s")
        self.time_s = time_s


def _trial_figure(task: RenderTask, frame_times: Sequence[float], nut: bytes) -> float:
    """The SSIM of the trial's sampled frames (decoded from its NUT output) to the source's."""
    import av
    import av.error

    from varia import quality
    from varia.frames import luma

    by_stream: dict[int, list[av.VideoFrame]] = {}
    try:
        with av.open(io.BytesIO(nut), mode="r", format="nut") as container:
            for packet in container.demux(*container.streams.video):
                decoded = by_stream.setdefault(packet.stream.index, [])
                decoded += [f for f in packet.decode() if isinstance(f, av.VideoFrame)]
    except av.error.FFmpegError:
        by_stream = {}  # nothing came out, or it was cut short
    samples = []
    for index, window in enumerate(windows(task, frame_times)):
        frame = _frame_at(by_stream.get(index, []), window.sample_s, 0.5 / task.media.fps)
        if frame is None:
            raise NoTrialFrame(frame_times[index])
        samples.append(luma(frame))
    sources = quality.source_samples(task.media.path, task.media.duration_s)
    ssim, _psnr = quality.compare(sources, samples)
    return ssim


def _frame_at(
    frames: Sequence[av.VideoFrame], at_s: float, within_s: float
) -> av.VideoFrame | None:
    """The frame timed nearest `at_s`, if less than `within_s` away."""
    timed = [(abs(frame.time - at_s), frame) for frame in frames if frame.time is not None]
    distance, nearest = min(timed, key=lambda pair: pair[0], default=(within_s, None))
    return nearest if distance < within_s else None


def may_fit(bounds: StrengthBounds, trial: float) -> bool:
    """Whether an output whose trial reads `trial` may measure within the bounds: the trial
    reads within `TRIAL_TOLERANCE` of the output's figure."""
    low = bounds.min_ssim is None or trial >= bounds.min_ssim - TRIAL_TOLERANCE
    return low and (bounds.max_ssim is None or trial <= bounds.max_ssim + TRIAL_TOLERANCE)


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
        if not may_fit(bounds, ssim):
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
        for refused in (final, final.with_name(f"{names.CELL_PREFIX}{final.name}.png")):
            with contextlib.suppress(FileNotFoundError):
                refused.unlink()  # the output and the frame it saved for the contact sheet
    tried = ", ".join(f"{a.ssim:.4f} ({a.stage})" for a in attempts)
    raise ApplicationError(
        f"{task.media.path} variation {task.variation}: no recipe within {bounds.describe()} "
        f"after {len(attempts)} attempt(s); SSIM of each: {tried}",
        [a.model_dump() for a in attempts],
        type=errors.OUT_OF_BOUNDS,
        non_retryable=True,
    )
