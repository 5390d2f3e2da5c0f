"""Opening an input as one single media file, and naming what FFmpeg found when it is not one.

An input is opened with three walls, so probing it never reads anything but the file itself:

- `format_whitelist`: FFmpeg refuses, before any demuxer reads a header, a container format that
  is not on `ALLOWED_DEMUXERS` (playlists, manifests, concat lists and image sequences open
  other files or URLs from their header);
- an `io_open` callback that opens the input once and refuses every other open;
- `protocol_whitelist=file`, inherited by any nested open that bypasses `io_open`.

When FFmpeg refuses the format, `detected_format` names it by asking libavformat's own probe
(the function `avformat_open_input` uses) about the file's name and first bytes.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from collections.abc import Callable
from typing import IO, Any

import av
import av.error

from varia.allowlist import ALLOWED_DEMUXERS, PROTOCOL_WHITELIST, demuxer_allowed

_PROBE_BYTES = 1 << 20
_NAME_ONLY_SCORE = 25
"""AVPROBE_SCORE_RETRY: FFmpeg takes a format from the name alone only above this score."""


class NotSingleFile(Exception):
    """The input is a container format that varia refuses (`.format` names it, if known)."""

    def __init__(self, format_name: str | None, opened: str | None) -> None:
        self.format_name = format_name
        self.opened = opened
        super().__init__(format_name or "an unknown format")


def open_single(path: str, **kwargs: Any) -> av.container.InputContainer:
    """Open `path` for reading as one single media file; raise `NotSingleFile` otherwise.

    Other `av.open` failures (not media at all, unreadable) propagate as PyAV raises them.
    """
    attempted: list[str] = []
    try:
        container = av.open(
            path,
            options={
                "protocol_whitelist": PROTOCOL_WHITELIST,
                "format_whitelist": ",".join(ALLOWED_DEMUXERS),
            },
            io_open=_only(path, attempted),
            **kwargs,
        )
    except av.error.ArgumentError as err:  # EINVAL: FFmpeg found a format off the whitelist
        found = detected_format(path)
        if found is not None and not demuxer_allowed(found):
            raise NotSingleFile(found, None) from err
        raise
    except _OtherFileRefused as err:
        raise NotSingleFile(detected_format(path), err.url) from None
    if not isinstance(container, av.container.InputContainer):
        container.close()
        raise TypeError(f"{path!r} opened for writing")
    return container


class _OtherFileRefused(PermissionError):
    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"refused to open {url!r}")


def _only(path: str, attempted: list[str]) -> Callable[[str, int, dict[str, str]], IO[bytes]]:
    """An `io_open` callback that opens `path` once for reading and refuses anything else."""

    def io_open(url: str, flags: int, options: dict[str, str]) -> IO[bytes]:
        attempted.append(url)
        if len(attempted) == 1 and url == path:
            return open(path, "rb")  # PyAV owns and closes it
        raise _OtherFileRefused(url)

    return io_open


class _ProbeData(ctypes.Structure):
    _fields_ = [  # the layout of AVProbeData
        ("filename", ctypes.c_char_p),
        ("buf", ctypes.c_char_p),
        ("buf_size", ctypes.c_int),
        ("mime_type", ctypes.c_char_p),
    ]


@functools.cache
def _probe_function() -> Any | None:
    """libavformat's `av_probe_input_format3`, from the copy PyAV loaded (None if not found)."""
    for library in _loaded_libavformat():
        try:
            function = ctypes.CDLL(library).av_probe_input_format3
        except (OSError, AttributeError):
            continue
        function.restype = ctypes.POINTER(ctypes.c_char_p)  # AVInputFormat starts with `name`
        function.argtypes = [
            ctypes.POINTER(_ProbeData),
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        return function
    return None


def _loaded_libavformat() -> list[str]:
    found: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                name = line.rstrip("\n").split(" ")[-1]
                if "libavformat" in os.path.basename(name) and name not in found:
                    found.append(name)
    except OSError:
        pass
    package = os.path.dirname(av.__file__)
    for pattern in ("../av.libs/libavformat*", ".dylibs/libavformat*"):
        found += sorted(glob.glob(os.path.join(package, pattern)))
    return found


def detected_format(path: str) -> str | None:
    """The demuxer FFmpeg's probe picks for `path` (its name and first bytes), or None."""
    probe = _probe_function()
    if probe is None:
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PROBE_BYTES)
    except OSError:
        return None
    name = os.fsencode(path)
    score = ctypes.c_int()
    padded = ctypes.create_string_buffer(head, len(head) + 64)  # AVPROBE_PADDING_SIZE zeros
    for is_opened, data in ((0, None), (1, padded)):  # as avformat_open_input: name, then data
        probe_data = _ProbeData(
            name,
            ctypes.cast(data, ctypes.c_char_p) if data is not None else None,
            len(head) if data is not None else 0,
            None,
        )
        found = probe(ctypes.byref(probe_data), is_opened, ctypes.byref(score))
        if found and found[0] and (is_opened or score.value > _NAME_ONLY_SCORE):
            value: bytes = found[0]
            return value.decode(errors="replace")
    return None


def main_video(container: av.container.InputContainer) -> av.VideoStream | None:
    """The video stream varia renders, as FFmpeg picks one by itself: the largest frame (the
    first of equals) of those that are not a still cover picture; None if there is none.
    Matroska keeps no cover flag, so a thumbnail track ahead of the video loses by its size."""
    best: av.VideoStream | None = None
    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        if best is None or _pixels(stream) > _pixels(best):
            best = stream
    return best


def _pixels(stream: av.VideoStream) -> int:
    context = stream.codec_context
    return (context.width or 0) * (context.height or 0) if context is not None else 0
