"""Decoding the frames varia measures and shows: one frame at each of a few times.

A frame "at t" is the first frame whose timestamp (from the stream's start) is at or after t,
less half a frame. varia's own outputs have a keyframe at every sample time (see
`varia.sampling`), so each sample decodes that one packet alone (`_keyframe_alone`); a source
decodes from the keyframe before (`_Sampler`).
Known limit: decoding starts at the keyframe a backward seek to a frame past t lands on, and a
demuxer may land on a keyframe shown after t (seeking by decode time in a stream with B-frames,
or an open group of pictures whose leading frames come before its keyframe). The frame is then
that keyframe, up to a few frames late; the tests' reference (`benchmarks.plain`) does the same.
All functions block (PyAV decodes in C): activities call them in a thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import av
import av.error
from av.video.reformatter import VideoReformatter

from varia.demux import main_video

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

METRIC_WIDTH = 320
"""Luma frames are measured at this width at most (keeps SSIM cheap at any input size)."""
SWS_THREADS = 1
"""swscale contexts and filter graphs here run in the calling thread, never with slice threads
of their own (PyAV's default, 0, starts them). A context with threads, freed in the fork child
of a `preexec_fn` spawn (Python frees the other threads' thread-locals there, where the reused
contexts live), waits forever for threads the child does not have: the worker, or a test
process running one, hung on its next spawn. The frames are small; threads would not pay."""


class FrameError(Exception):
    """A frame could not be decoded; the message names the file and the time."""


def _open(path: str, source: bool) -> av.container.InputContainer:
    """An input is opened as one single media file (`varia.demux`); varia's outputs plainly."""
    if not source:
        return av.open(path)
    from varia.demux import NotSingleFile, open_single

    try:
        return open_single(path)
    except NotSingleFile as err:
        raise FrameError(f"{path!r} is not one single media file ({err})") from None


def frames_at(
    path: str,
    times_s: Sequence[float] = (),
    *,
    fractions: Sequence[float] = (),
    source: bool = False,
) -> list[av.VideoFrame]:
    """Decode the frame at each of `times_s` (seconds from the stream's start), in order; or, with
    `fractions`, at those fractions of the stream's duration (one opening of the file for both).

    `source`: the file is a job's input, opened only as one single file of an allowed format.
    """
    with _decode_errors(path), _open(path, source) as container:
        if fractions:
            length = _duration(container, path)
            times_s = [fraction * length for fraction in fractions]
        return _frames_in(container, times_s, path, source)


def frames_in(
    container: av.container.InputContainer, times_s: Sequence[float], path: str
) -> list[av.VideoFrame]:
    """`frames_at` in a container the caller opened (e.g. the output check's: one opening of
    the file for both); the frames are the same. `path` names the file in errors."""
    with _decode_errors(path):
        return _frames_in(container, times_s, path, source=False)


@contextlib.contextmanager
def _decode_errors(path: str) -> Iterator[None]:
    """Turn PyAV's and the OS's errors while decoding `path` into a `FrameError` naming it."""
    try:
        yield
    except (av.error.FFmpegError, OSError, IndexError) as err:
        raise FrameError(f"{path!r}: {err}") from err


def _frames_in(
    container: av.container.InputContainer, times_s: Sequence[float], path: str, source: bool
) -> list[av.VideoFrame]:
    stream = _video_of(container, path)
    rate = stream.average_rate or stream.guessed_rate
    frame_s = 1.0 / float(rate) if rate else 0.04
    if stream.time_base is None:
        raise FrameError(f"{path!r}: the video stream has no time base")
    start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    with _Sampler(container, stream, frame_s, path, source) as sampler:
        return [sampler.frame_at(start + t) for t in times_s]


NONREF_SKIPPING_CODECS = frozenset({"h264", "mpeg1video", "mpeg2video", "mpeg4", "vp8", "vp9"})
"""Decoders whose `skip_frame=NONREF` drops only frames no other frame refers to (HEVC's
"sub-layer non-reference" pictures may still be referred to by a higher temporal layer)."""
NONREF_MARGIN_FRAMES = 2
"""Frames before the wanted time within which nothing is skipped (a packet's and its frame's
timestamps may differ by rounding)."""


class _Sampler:
    """The frames at a stream's times, decoding as little as gives the same pixels.

    The frame at t is the first at or after t less half a frame, decoded from the keyframe a
    backward seek lands on. Three savings keep those pixels: a keyframe that is that frame is
    decoded alone (`_keyframe_alone`); frames before t that no frame refers to are not
    decoded (`NONREF_SKIPPING_CODECS`); and when a seek would land on a keyframe the decoder
    has already passed, it goes on from where it is instead (a source's samples often share
    one group of pictures: seeking for each decoded its start again). A second opening of the
    file (`probe`) answers where a seek would land, without moving the decoder.
    """

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        frame_s: float,
        path: str,
        source: bool,
    ) -> None:
        self.container, self.stream, self.frame_s = container, stream, frame_s
        assert stream.time_base is not None  # `_frames_in` checked it
        self.base = stream.time_base
        self.path, self.source = path, source
        self.codec = stream.codec_context
        self.skips_nonref = self.codec.name in NONREF_SKIPPING_CODECS
        self.probe: av.container.InputContainer | None = None
        # demuxing on from where the decoder is (None: from the last seek)
        self.packets: Iterator[av.Packet[av.VideoStream]] | None = None
        self.ready: list[av.VideoFrame] = []  # decoded after the last frame returned
        self.last_pts: int | None = None  # the last frame decoded, if decoding may go on
        self.drained = False  # the decoder has been told the stream ended
        self.seeks = self.decoded = 0  # what it cost: seeks, frames out of the decoder

    def __enter__(self) -> _Sampler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.codec.skip_frame = "DEFAULT"
        if self.probe is not None:
            self.probe.close()

    def frame_at(self, at_s: float) -> av.VideoFrame:
        base = self.base
        threshold = at_s - self.frame_s / 2
        # A forced keyframe sits on the first frame at or after `at_s`: seek a frame further.
        target = int((at_s + self.frame_s) / base)
        going_on = self._may_go_on(target, threshold)
        if not going_on:
            self._seek(target)
            frame = _keyframe_alone(self.container, self.stream, at_s, self.frame_s)
            if frame is not None:
                return frame
            self._seek(target)
        frame = self._decode_to(threshold, skip=self.skips_nonref)
        if frame is None and (going_on or self.skips_nonref):  # past the end: the last frame
            self._seek(target)
            frame = self._decode_to(threshold, skip=False)
        if frame is None:
            raise FrameError(f"{self.path!r}: no frame decodes at {at_s:.3f}s")
        return frame

    def _seek(self, target: int) -> None:
        self.container.seek(target, stream=self.stream, backward=True)
        self.codec.flush_buffers()  # also ends a drained decoder's end of stream
        self.seeks += 1
        self.packets, self.ready, self.last_pts, self.drained = None, [], None, False

    def _may_go_on(self, target: int, threshold: float) -> bool:
        """Whether decoding on from here reaches `threshold` through the keyframe a seek to
        `target` would land on (so from here gives the seek's pixels, with less decoding)."""
        base = self.base
        if self.drained or self.last_pts is None or float(self.last_pts * base) >= threshold:
            return False
        if self.probe is None:
            self.probe = _open(self.path, self.source)
        probe_stream = self.probe.streams.video[0]  # as `_frames_in` decodes the first
        self.probe.seek(target, stream=probe_stream, backward=True)
        landing = next((p.pts for p in self.probe.demux(probe_stream) if p.pts is not None), None)
        return landing is not None and landing <= self.last_pts

    def _decode_to(self, threshold: float, *, skip: bool) -> av.VideoFrame | None:
        """Decode on to the first frame at or after `threshold`; past the end, the last frame
        decoded (None if none). With `skip`, frames well before it that nothing refers to are
        not decoded."""
        base = self.base
        skip_before = threshold - NONREF_MARGIN_FRAMES * self.frame_s
        last = None
        if self.packets is None:
            self.packets = self.container.demux(self.stream)
        while True:
            while self.ready:
                frame = self.ready.pop(0)
                if frame.pts is None:
                    continue
                self.last_pts, last = frame.pts, frame
                if float(frame.pts * base) >= threshold:  # (a drained frame's `time` is NaN)
                    return frame
            packet = None if self.drained else next(self.packets, None)
            if packet is None or not packet.size:  # the end: drain the decoder, once
                if self.drained:
                    break
                self.drained = True
                self.ready = self.codec.decode(None)
                self.decoded += len(self.ready)
                continue
            early = packet.pts is not None and float(packet.pts * base) < skip_before
            self.codec.skip_frame = "NONREF" if skip and early else "DEFAULT"
            self.ready = self.codec.decode(packet)
            self.decoded += len(self.ready)
        self.codec.skip_frame = "DEFAULT"
        return last


def _keyframe_alone(
    container: av.container.InputContainer, stream: av.VideoStream, at_s: float, frame_s: float
) -> av.VideoFrame | None:
    """The frame at `at_s` when the seek landed on a keyframe that is that frame, else None.

    Decoding from that keyframe would return it first (it is at or after `at_s` less half a
    frame, and a closed group of pictures shows nothing before it), so that one packet is
    decoded and drained: the decoder does not decode the next frames to fill its reordering
    delay. varia's outputs have such a keyframe at every sample time; other files fall back.
    """
    assert stream.time_base is not None
    packets = ((p, p.pts) for p in container.demux(stream) if p.pts is not None and p.size)
    key, key_pts = next(packets, (None, 0))
    if key is None or not key.is_keyframe or float(key_pts * stream.time_base) < at_s - frame_s / 2:
        return None
    _, after_pts = next(packets, (None, key_pts))
    if after_pts < key_pts:  # an open group of pictures: leading frames come before it
        return None
    codec = stream.codec_context
    frames = codec.decode(key) + codec.decode(None)
    codec.flush_buffers()
    return frames[0] if len(frames) == 1 else None


def luma(frame: av.VideoFrame, width: int = METRIC_WIDTH) -> np.ndarray:
    """The frame's luma (8-bit gray), scaled down to `width` at most (area average, even
    height), in one swscale pass."""
    if frame.width <= width:
        target_width, target_height = frame.width, frame.height
    else:
        target_width = width
        target_height = max(2, round(frame.height * width / frame.width / 2) * 2)
    gray = _reformatter("luma").reformat(
        frame,
        width=target_width,
        height=target_height,
        format="gray",
        interpolation="AREA",
        threads=SWS_THREADS,
    )
    return gray.to_ndarray()


_local = threading.local()


def _reformatter(purpose: str) -> VideoReformatter:
    """This thread's reformatter for one purpose: it keeps its swscale context from frame to
    frame while the sizes and formats stay the same (a frame's own `reformat` builds a new one
    each time, 5x the cost); contexts are not thread-safe, hence one per thread."""
    reformatter: VideoReformatter | None = getattr(_local, purpose, None)
    if reformatter is None:
        reformatter = VideoReformatter()
        setattr(_local, purpose, reformatter)
    return reformatter


def scaled_rgb(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """The frame as RGB, scaled to fit `width` x `height` (aspect kept, area average)."""
    scale = min(width / frame.width, height / frame.height)
    w, h = max(2, int(frame.width * scale)), max(2, int(frame.height * scale))
    return _reformatter("thumbnail").reformat(
        frame, width=w, height=h, format="rgb24", interpolation="AREA", threads=SWS_THREADS
    )


def upright(frame: av.VideoFrame) -> av.VideoFrame:
    """The frame as a player shows it: turned by its rotation flag (display matrix), if any.
    Renders keep frames as stored and carry the flag over; only pictures for people turn."""
    turns = round(frame.rotation / 90) % 4
    if not turns:
        return frame
    import numpy as np

    turned = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), turns), np.uint8)
    return av.VideoFrame.from_ndarray(turned, format="rgb24")


def thumbnail(frame: av.VideoFrame, width: int, height: int) -> Image.Image:
    """The frame as an RGB picture of exactly `width` x `height` (letterboxed if needed)."""
    from PIL import Image

    scaled = scaled_rgb(frame, width, height)
    picture: Image.Image = scaled.to_image()  # type: ignore[no-untyped-call]
    if (scaled.width, scaled.height) == (width, height):
        return picture
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(picture, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


def png_bytes(frame: av.VideoFrame) -> bytes:
    """An RGB frame as PNG bytes: FFmpeg's encoder, `up` prediction, fast deflate (lossless;
    half the CPU of Pillow's adaptive filtering at its fastest level). No threads of its own
    (see `SWS_THREADS`)."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, "rgb24"
    codec.thread_count = 1
    codec.options = {"pred": "up", "compression_level": "1"}
    rgb = frame if frame.format.name == "rgb24" else frame.reformat(format="rgb24", threads=1)
    return b"".join(bytes(packet) for packet in codec.encode(rgb) + codec.encode(None))


def duration_s(path: str, *, source: bool = False) -> float:
    """The video stream's duration in seconds (container's if the stream has none)."""
    try:
        with _open(path, source) as container:
            return _duration(container, path)
    except (av.error.FFmpegError, OSError, IndexError) as err:
        raise FrameError(f"{path!r}: {err}") from err


def _video_of(container: av.container.InputContainer, path: str) -> av.VideoStream:
    """The video stream renders read (`demux.main_video`)."""
    stream = main_video(container)
    if stream is None:
        raise FrameError(f"{path!r} has no video stream but still cover pictures")
    return stream


def _duration(container: av.container.InputContainer, path: str) -> float:
    stream = _video_of(container, path)
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    raise FrameError(f"{path!r}: no duration")
