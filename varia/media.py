"""Reading media with PyAV: probe an input, prove an output is whole.

Both functions block (PyAV decodes in C); activities call them in a thread.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import av.error

from varia.models import MediaInfo

TAIL_TOLERANCE_S = 0.5
"""How far short of the stated duration a file's last packet may end (input truncation)."""


class MediaError(Exception):
    """The file is not usable media; the message names the file and the reason."""


def probe(path: str) -> MediaInfo:
    """Open an input and read what the plan needs; raise `MediaError` naming what is wrong.

    Missing, empty, unreadable, not a video, no video stream, or truncated (no frame decodes)
    are each a `MediaError`. An input without audio is fine.
    """
    file = Path(path)
    if not file.exists():
        raise MediaError(f"input {path!r} does not exist")
    if not file.is_file():
        raise MediaError(f"input {path!r} is not a regular file")
    if file.stat().st_size == 0:
        raise MediaError(f"input {path!r} is empty (0 bytes)")
    if not os.access(file, os.R_OK):
        raise MediaError(f"input {path!r} is not readable")
    try:
        with av.open(str(file), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise MediaError(f"input {path!r} has no video stream")
            video = container.streams.video[0]
            has_audio = bool(container.streams.audio)
            duration = _duration_s(container, video)
            width, height = video.codec_context.width, video.codec_context.height
            rate = video.average_rate or video.guessed_rate
            fps = float(rate) if rate else 25.0
            _decode_one_frame(container, f"input {path!r}")
            if duration:
                _check_tail(container, video, duration, f"input {path!r}")
    except MediaError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as err:
        raise MediaError(f"input {path!r} is not a readable video: {err}") from err
    if not width or not height:
        raise MediaError(f"input {path!r} has a video stream without a frame size")
    if duration is None or duration <= 0:
        raise MediaError(f"input {path!r} has no usable duration (truncated or a still image?)")
    return MediaInfo(
        path=str(file),
        duration_s=duration,
        width=width,
        height=height,
        fps=fps,
        has_audio=has_audio,
    )


def _duration_s(container: av.container.InputContainer, video: av.VideoStream) -> float | None:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode_one_frame(container: av.container.InputContainer, label: str) -> None:
    for _frame in container.decode(video=0):
        return
    raise MediaError(f"{label} is truncated: no video frame decodes")


def check_output(path: str, expected_duration_s: float, tolerance_s: float) -> float:
    """Prove a finished output is whole and return its duration in seconds.

    Opening needs the MP4 index (a killed FFmpeg leaves none); the first frame must decode,
    the packets must reach the end, and the video duration must match `expected_duration_s`
    within `tolerance_s` (an encode stopped early with `q` is whole but short: rejected).
    Raises `MediaError` otherwise.
    """
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise MediaError(f"output {path!r} has no video stream")
            video = container.streams.video[0]
            duration = _duration_s(container, video)
            if duration is None or abs(duration - expected_duration_s) > tolerance_s:
                raise MediaError(
                    f"output {path!r} lasts {duration}s, expected about {expected_duration_s:.2f}s"
                )
            _decode_one_frame(container, f"output {path!r}")
            _check_tail(container, video, duration, f"output {path!r}")
    except MediaError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise MediaError(f"output {path!r} does not decode: {err}") from err
    return duration


def _check_tail(
    container: av.container.InputContainer, video: av.VideoStream, duration: float, label: str
) -> None:
    """Demux from the last keyframe to the end: the packets must reach the stated duration.

    A file cut short keeps its index (with `+faststart`) but loses the packets it points to.
    """
    if video.time_base is None:
        return
    target = int(max(0.0, duration - 1.0) / video.time_base)
    container.seek(target, stream=video, backward=True, any_frame=False)
    last_end = 0.0
    for packet in container.demux(video):
        if packet.size and packet.pts is not None:
            last_end = max(last_end, float((packet.pts + (packet.duration or 0)) * video.time_base))
    start = float(video.start_time * video.time_base) if video.start_time else 0.0
    if last_end - start < duration - TAIL_TOLERANCE_S:
        raise MediaError(
            f"{label} is truncated: its packets end at {last_end - start:.2f}s of {duration:.2f}s"
        )
