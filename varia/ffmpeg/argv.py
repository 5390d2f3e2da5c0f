"""Pure FFmpeg argv builder: a render task in, an argument list out (never a shell string).

Paths are passed with the `file:` protocol, so a name that starts with `-` or looks like a URL
(`http:…`, `concat:…`) is always read as a local file, never as an option or a protocol. The
input is read with the demuxer the probe found (`-f`) and `-protocol_whitelist file`, so FFmpeg
cannot open any other file or URL on its behalf either.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from varia.allowlist import ALLOWED_DEMUXERS, PROTOCOL_WHITELIST
from varia.models import MediaInfo, Recipe, RenderTask
from varia.sampling import force_key_frames

STATS_PERIOD_S = 0.25
"""How often FFmpeg reports progress; it also bounds how fast `q` (or SIGTERM) takes effect.
0.25 s: reading and parsing the reports cost the worker ~1.8 ms of CPU per render-second at
0.1 s (3.6 at 0.05 s); heartbeats go out 1 s apart; and a cancel no longer waits for `q`
(its stage is bounded by `VARIA_CANCEL_STAGE_TIMEOUT`), only shutdowns and stalls do."""


def file_url(path: str | os.PathLike[str]) -> str:
    """An absolute path as an FFmpeg `file:` URL, so it is never taken for an option."""
    return "file:" + os.fspath(Path(path).absolute())


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def video_filters(recipe: Recipe, media: MediaInfo) -> str:
    """The `-vf` chain for a recipe; the output keeps the input's (even) frame size."""
    width, height = _even(media.width), _even(media.height)
    filters: list[str] = []
    if recipe.zoom > 1.0:
        crop_w = f"iw/{recipe.zoom:.4f}"
        crop_h = f"ih/{recipe.zoom:.4f}"
        filters.append(
            f"crop={crop_w}:{crop_h}:(iw-{crop_w})*{recipe.pan_x:.4f}:(ih-{crop_h})*{recipe.pan_y:.4f}"
        )
    filters.append(f"scale={width}:{height}")
    if media.pixel_aspect is not None:  # the crop's rounding would otherwise skew it (171:170)
        filters.append(f"setsar={media.pixel_aspect[0]}/{media.pixel_aspect[1]}")
    if recipe.mirror:  # left-right as shown: a frame shown turned a quarter flips up-down
        filters.append("vflip" if media.rotation % 180 == 90 else "hflip")
    filters.append(
        f"eq=brightness={recipe.brightness:.4f}:contrast={recipe.contrast:.4f}"
        f":saturation={recipe.saturation:.4f}"
    )
    if recipe.hue_degrees:
        filters.append(f"hue=h={recipe.hue_degrees:.2f}")
    if recipe.noise > 0:
        filters.append(f"noise=alls={recipe.noise}:allf=t")
    if recipe.speed != 1.0:
        filters.append(f"setpts=PTS/{recipe.speed:.4f}")
    filters.append("format=yuv420p")
    return ",".join(filters)


def video_map(media: MediaInfo) -> str:
    """The `-map` of the video stream the probe chose (`demux.main_video`); the first video
    stream for a `MediaInfo` recorded before probes chose one."""
    return "0:v:0" if media.video_stream is None else f"0:{media.video_stream}"


def audio_filters(recipe: Recipe) -> str | None:
    """The `-af` chain, or None when the audio is copied through unchanged in tempo."""
    if recipe.speed == 1.0:
        return None
    return f"atempo={recipe.speed:.4f}"


def input_options(media: MediaInfo) -> list[str]:
    """The options before `-i`: the protocol white-list, the probed demuxer (when known) and
    `-noautorotate`.

    The filters work on the frames as stored and the output keeps the input's rotation flag
    (its display matrix): turned upright first, a portrait phone video was scaled back into
    the stored landscape size, squashed, and measured against the unturned source.

    A `MediaInfo` from a history recorded before probes named the demuxer has none; FFmpeg then
    probes the format itself, still limited to local files. A demuxer off the allow-list is
    refused (`ValueError`): the probe never returns one.
    """
    options = ["-protocol_whitelist", PROTOCOL_WHITELIST, "-noautorotate"]
    if media.demuxer is not None:
        if media.demuxer not in ALLOWED_DEMUXERS:
            raise ValueError(f"demuxer {media.demuxer!r} of {media.path!r} is not allowed")
        options += ["-f", media.demuxer]
    return options


def build_render_argv(
    ffmpeg: str, task: RenderTask, output_path: str | os.PathLike[str]
) -> list[str]:
    """The full argv of one render.

    stdin stays open (no `-nostdin`) so `q` can stop the encode gracefully; progress goes to
    stdout as `key=value` lines; only errors go to stderr.
    """
    recipe, media = task.recipe, task.media
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-y",
        "-progress",
        "pipe:1",
        "-stats_period",
        str(STATS_PERIOD_S),
        *input_options(media),
        "-i",
        file_url(media.path),
        "-map",
        video_map(media),
        "-vf",
        video_filters(recipe, media),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        str(recipe.crf),
        "-force_key_frames",
        force_key_frames(task.expected_duration_s),
    ]
    if task.threads is not None:
        argv += ["-threads", str(task.threads)]
    if media.has_audio:
        argv += ["-map", "0:a:0"]
        af = audio_filters(recipe)
        if af:
            argv += ["-af", af]
        argv += ["-c:a", "aac", "-b:a", "128k"]
    argv += ["-movflags", "+faststart", "-f", "mp4", file_url(output_path)]
    tag = f"comment={RENDER_TAG_PREFIX}{_digest(argv[1:])}"  # where FFmpeg lives is no part
    return [*argv[:-1], "-metadata", tag, argv[-1]]


RENDER_TAG_PREFIX = "varia render "
"""The output's `comment` tag: this prefix and a digest of the argv that made it (its options
and paths, not the FFmpeg binary's path, which may differ from worker to worker). A retried
render adopts an output already under its name only if the tag is its own (`render_tag`): a
file copied there (the input itself, another job's output) is rendered over instead."""


def _digest(argv: list[str]) -> str:
    return hashlib.sha256("\0".join(argv).encode()).hexdigest()[:32]


def render_tag(argv: list[str]) -> str:
    """The `comment` tag the output of `argv` (a `build_render_argv`) carries."""
    return argv[argv.index("-metadata") + 1].removeprefix("comment=")
