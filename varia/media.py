"""Reading media with PyAV: probe an input, prove an output is whole.

Both functions block (PyAV decodes in C); activities call them in a thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import av
import av.error

from varia import demux
from varia.allowlist import ALLOWED_DEMUXERS
from varia.models import InputLimits, MediaInfo

TAIL_TOLERANCE_S = 0.5
"""How far short of the stated duration a file's last packet may end (input truncation)."""


class MediaError(Exception):
    """The file is not usable media; the message names the file and the reason."""


def probe(path: str, limits: InputLimits | None = None) -> MediaInfo:
    """Open an input and read what the plan needs; raise `MediaError` naming what is wrong.

    Missing, empty, unreadable, not a single media file (a container format off
    `ALLOWED_DEMUXERS`: playlists, manifests, concat lists, image sequences), over one of
    `limits`, not a video, no video stream, or truncated (no frame decodes) are each a
    `MediaError`. The limits are checked on what the headers declare, before any frame is
    decoded. Nothing but the file itself is opened. An input without audio is fine.
    """
    limits = limits or InputLimits()
    label = f"input {path!r}"
    file = Path(path)
    if not file.exists():
        raise MediaError(f"{label} does not exist")
    if not file.is_file():
        raise MediaError(f"{label} is not a regular file")
    probed = file.stat()
    size = probed.st_size
    if size == 0:
        raise MediaError(f"{label} is empty (0 bytes)")
    if size > limits.max_bytes:
        raise MediaError(_over(label, f"is {size:,} bytes", f"{limits.max_bytes:,} bytes", "BYTES"))
    if not os.access(file, os.R_OK):
        raise MediaError(f"{label} is not readable")
    try:
        container = demux.open_single(str(file), metadata_errors="ignore")
    except demux.NotSingleFile as err:
        raise MediaError(_not_single_file(label, err)) from None
    except _AV_ERRORS as err:
        raise MediaError(f"{label} is not a readable video: {describe_error(err, True)}") from err
    try:
        with container:
            _check_declared(container, limits, label)
            video = demux.main_video(container)
            assert video is not None  # `_check_declared` refused a file without one
            video_index = video.index
            duration = _duration_s(container, video)
            if duration is not None and duration > limits.max_duration_s:
                raise MediaError(
                    _over(
                        label,
                        f"lasts {_num(duration)} s",
                        f"{_num(limits.max_duration_s)} s",
                        "DURATION",
                    )
                )
            width, height = video.codec_context.width, video.codec_context.height
            rate = video.average_rate or video.guessed_rate
            fps = float(rate) if rate else 25.0
            rotation = round(_decode_one_frame(container, video, label).rotation)
            pixel_aspect = video.sample_aspect_ratio or video.codec_context.sample_aspect_ratio
            if duration:
                _check_tail(container, video, duration, label)
            demuxer = container.format.name.split(",")[0]
            has_audio = bool(container.streams.audio)
    except MediaError:
        raise
    except _AV_ERRORS as err:
        raise MediaError(f"{label} is not a readable video: {describe_error(err, False)}") from err
    if duration is None or duration <= 0:
        raise MediaError(f"{label} has no usable duration (truncated or a still image?)")
    return MediaInfo(
        path=str(file),
        duration_s=duration,
        width=width,
        height=height,
        fps=fps,
        has_audio=has_audio,
        demuxer=demuxer,
        bytes=size,
        mtime_ns=probed.st_mtime_ns,
        inode=(probed.st_dev, probed.st_ino),
        rotation=rotation,
        video_stream=video_index,
        pixel_aspect=(
            (pixel_aspect.numerator, pixel_aspect.denominator)
            if pixel_aspect and pixel_aspect > 0
            else (1, 1)
        ),
    )


MAX_AUDIO_CHANNELS = 8
"""The most audio channels FFmpeg's AAC encoder takes (7.1); more failed every render."""


def check_unchanged(info: MediaInfo) -> None:
    """Raise `MediaError` if the input is no longer the file the job probed (its size, its
    modification time or its inode changed: another file moved to its path is caught even
    with the same size and time): its renders would not match the plan made from the probe."""
    if info.bytes is None or info.mtime_ns is None:
        return  # probed by older varia: nothing to compare
    label = f"input {info.path!r}"
    try:
        now = os.stat(info.path)
    except OSError as err:
        raise MediaError(f"{label} is gone since the job probed it ({err.strerror})") from None
    if (now.st_size, now.st_mtime_ns) != (info.bytes, info.mtime_ns):
        what = (
            f"{info.bytes:,} bytes then, {now.st_size:,} now"
            if now.st_size != info.bytes
            else f"modified at {_when(now.st_mtime_ns)}, after the probe saw it at "
            f"{_when(info.mtime_ns)}; same size"
        )
        raise MediaError(
            f"{label} changed since the job probed it ({what}); the job renders only the file "
            "it probed: start a new job for the new one"
        )
    if info.inode is not None and (now.st_dev, now.st_ino) != tuple(info.inode):
        raise MediaError(
            f"{label} was replaced by another file since the job probed it; the job renders "
            "only the file it probed: start a new job for the new one"
        )


def _when(ns: int) -> str:
    """A modification time as UTC, to the millisecond."""
    moment = datetime.fromtimestamp(ns / 1e9, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


_AV_ERRORS = (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError)


def _check_declared(
    container: av.container.InputContainer, limits: InputLimits, label: str
) -> None:
    """Refuse, from the headers alone, what no render should try: too many streams, no video,
    a frame with no size or over the pixel limit."""
    streams = len(container.streams)
    if streams > limits.max_streams:
        raise MediaError(_over(label, f"has {streams} streams", str(limits.max_streams), "STREAMS"))
    if not container.streams.video:
        raise MediaError(f"{label} has no video stream")
    video = demux.main_video(container)
    if video is None:
        raise MediaError(
            f"{label} has no video to vary: its only video is a still cover picture (an audio "
            "file with cover art?)"
        )
    if container.streams.audio:
        audio = container.streams.audio[0].codec_context  # None: cut before its setup
        channels = audio.channels if audio is not None else 0
        if channels > MAX_AUDIO_CHANNELS:
            raise MediaError(
                f"{label} has {channels}-channel audio; varia's audio encoder (AAC) takes at "
                f"most {MAX_AUDIO_CHANNELS}: mix it down first (e.g. ffmpeg -ac 2)"
            )
    context = _codec_of(video, label)
    width, height = context.width, context.height
    if not width or not height:
        raise MediaError(f"{label} has a video stream without a frame size")
    if width * height > limits.max_pixels:
        raise MediaError(
            _over(
                label,
                f"has {width}x{height} frames ({width * height:,} pixels)",
                f"{limits.max_pixels:,} pixels",
                "PIXELS",
            )
        )


def _num(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def _over(label: str, value: str, limit: str, setting: str) -> str:
    return f"{label} {value}; the limit is {limit} (VARIA_MAX_INPUT_{setting})"


def _not_single_file(label: str, err: demux.NotSingleFile) -> str:
    found = f"{err.format_name!r}" if err.format_name else "one off the allow-list"
    if err.opened:
        found += f", which tries to open another file or URL ({err.opened!r})"
    return (
        f"{label} is in a container format varia does not read: {found}. varia reads one "
        f"media file in {', '.join(ALLOWED_DEMUXERS)} (MP4 and WebM included); playlists, "
        "manifests, concat lists, image sequences and still images are refused. Convert it "
        "to one MP4 first (e.g. ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4)"
    )


def describe_error(err: BaseException, opening: bool) -> str:
    """A PyAV/FFmpeg error in words, without FFmpeg's raw error number or a repeated path."""
    if isinstance(err, av.error.InvalidDataError):
        what = "find a known container format" if opening else "decode it"
        return f"FFmpeg could not {what} ({err.strerror})"
    if isinstance(err, av.error.FFmpegError):
        return f"FFmpeg could not {'open' if opening else 'read'} it ({err.strerror})"
    if isinstance(err, UnicodeDecodeError):
        return "its metadata is not valid text"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def _duration_s(container: av.container.InputContainer, video: av.VideoStream) -> float | None:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode_one_frame(
    container: av.container.InputContainer, video: av.VideoStream, label: str
) -> av.VideoFrame:
    """The first video frame, which must decode. A first packet that is a keyframe is decoded alone
    and drained (the decoder does not go on to fill its reordering delay: a third of the cost
    of an output's check at 720p); any other stream is decoded from its start."""
    first = next((p for p in container.demux(video) if p.size), None)
    if first is not None and first.is_keyframe:
        codec = video.codec_context
        frames = codec.decode(first) + codec.decode(None)
        codec.flush_buffers()
        if frames:
            return frames[0]
    container.seek(0, stream=video)
    for frame in container.decode(video):
        return frame
    raise MediaError(f"{label} is truncated: no video frame decodes")


OUTPUT_PROBE_OPTIONS = [{"skip_frame": "all"}]
"""Opening an output decodes no video frame while FFmpeg probes its streams (the MP4 index
names them; the check decodes the frames it needs itself): a sixth of the check's cost."""


def check_output(path: str, expected_duration_s: float, tolerance_s: float) -> float:
    """Prove a finished output is whole and return its duration in seconds.

    Opening needs the MP4 index (a killed FFmpeg leaves none); the first frame must decode,
    the packets must reach the end, and the video duration must match `expected_duration_s`
    within `tolerance_s` (an encode stopped early with `q` is whole but short: rejected).
    Raises `MediaError` otherwise. Like an input, it is opened as one single file (an
    MP4 index), so nothing else is ever read on its behalf.
    """
    with checked_output(path, expected_duration_s, tolerance_s) as (_container, duration):
        return duration


@contextlib.contextmanager
def checked_output(
    path: str, expected_duration_s: float, tolerance_s: float
) -> Iterator[tuple[av.container.InputContainer, float]]:
    """`check_output`, then the still open container and the duration for the caller (who
    reads more of the file without opening it again). Only the check raises `MediaError`;
    what the caller's block raises passes through unchanged."""
    try:
        container = demux.open_single(path, stream_options=OUTPUT_PROBE_OPTIONS)
    except demux.NotSingleFile as err:
        raise MediaError(_not_single_file(f"output {path!r}", err)) from None
    except _AV_ERRORS as err:
        raise MediaError(f"output {path!r} does not open: {describe_error(err, True)}") from err
    except ValueError:  # PyAV: the streams are not known before probing, so not varia's MP4
        raise MediaError(f"output {path!r} is not an MP4 file") from None
    with container:
        try:
            duration = _check_opened(container, path, expected_duration_s, tolerance_s)
        except MediaError:
            raise
        except _AV_ERRORS as err:
            raise MediaError(
                f"output {path!r} does not decode: {describe_error(err, False)}"
            ) from err
        yield container, duration


def _check_opened(
    container: av.container.InputContainer,
    path: str,
    expected_duration_s: float,
    tolerance_s: float,
) -> float:
    if not container.streams.video:
        raise MediaError(f"output {path!r} has no video stream")
    video = container.streams.video[0]
    # One frame at a time: decoder threads would only be started and joined (the same
    # frames; decoding is exact whatever the thread count).
    _codec_of(video, f"output {path!r}").thread_count = 1
    duration = _duration_s(container, video)
    if duration is None or abs(duration - expected_duration_s) > tolerance_s:
        raise MediaError(
            f"output {path!r} lasts {duration}s, expected about {expected_duration_s:.2f}s"
        )
    _check_boxes(path, f"output {path!r}")
    _decode_one_frame(container, video, f"output {path!r}")
    _check_tail(container, video, duration, f"output {path!r}", whole=True)
    return duration


def _check_tail(
    container: av.container.InputContainer,
    video: av.VideoStream,
    duration: float,
    label: str,
    *,
    whole: bool = False,
) -> None:
    """Demux from the last keyframe to the end: the packets must reach the stated duration.

    A file cut short keeps its index (with `+faststart`) but loses the packets it points to;
    the last ones may fall short by `TAIL_TOLERANCE_S`. With `whole` (varia's own outputs)
    no packet of any stream may be cut short either (the demuxer flags one the end of the
    file cut; a cut between packets is `_check_boxes`' to find).
    """
    if video.time_base is None:
        return
    target = int(max(0.0, duration - 1.0) / video.time_base)
    container.seek(target, stream=video, backward=True, any_frame=False)
    last_end = 0.0
    for packet in container.demux(*([video, *container.streams.audio] if whole else [video])):
        if whole and packet.is_corrupt:
            raise MediaError(f"{label} is truncated: a packet at its end is cut short")
        if packet.stream is video and packet.size and packet.pts is not None:
            last_end = max(last_end, float((packet.pts + (packet.duration or 0)) * video.time_base))
    start = float(video.start_time * video.time_base) if video.start_time else 0.0
    if last_end == 0.0:
        raise MediaError(
            f"{label} is truncated: no video packet of its last second is there "
            f"(its header says it lasts {duration:.2f}s)"
        )
    if last_end - start < duration - TAIL_TOLERANCE_S:
        raise MediaError(
            f"{label} is truncated: its packets end at {last_end - start:.2f}s of {duration:.2f}s"
        )


def _codec_of(video: av.VideoStream, label: str) -> av.VideoCodecContext:
    """The stream's decoder context; a stream whose codec parameters never arrived (an index
    cut short) has none."""
    context = video.codec_context
    if context is None:
        raise MediaError(f"{label} is truncated or damaged: its video stream has no decoder setup")
    return context


def _check_boxes(path: str, label: str) -> None:
    """The MP4's top-level boxes (`ftyp`, `moov`, `mdat`, ...) must tile the file exactly:
    a file cut anywhere after its index has an `mdat` that claims more bytes than are left,
    even where the cut falls between two packets (which nothing else in the file shows)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        offset = 0
        while offset < size:
            handle.seek(offset)
            header = handle.read(16)
            length = int.from_bytes(header[:4], "big") if len(header) >= 8 else -1
            if length == 1:  # a 64-bit size follows the type
                length = int.from_bytes(header[8:16], "big") if len(header) == 16 else -1
            if length == -1:
                raise MediaError(f"{label} is truncated: a box header is cut short")
            elif length == 0:  # the box runs to the end of the file
                return
            if length < 8 or offset + length > size:
                kind = header[4:8].decode("latin-1")
                raise MediaError(
                    f"{label} is truncated: its {kind!r} box needs {offset + length} bytes, "
                    f"the file has {size}"
                )
            offset += length
