"""The record that reproduces and verifies an output: its SHA-256, the FFmpeg that made it,
varia's version and the exact argv.

Re-running the recorded argv with the same FFmpeg build, on a machine with as many cores (x264
picks its thread count from them unless the job set `threads`), writes the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess

from varia import __version__
from varia.models import FfmpegBuild

_CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ffmpeg_build(ffmpeg: str) -> FfmpegBuild:
    """Version, build line and a hash of the configuration of an FFmpeg binary (cached per
    binary path, size and modification time); `unknown` if it does not say."""
    try:
        stat = os.stat(ffmpeg)
    except OSError:
        return FfmpegBuild(version="unknown")
    return _ffmpeg_build(ffmpeg, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _ffmpeg_build(ffmpeg: str, size: int, mtime_ns: int) -> FfmpegBuild:
    del size, mtime_ns  # part of the cache key only
    try:
        done = subprocess.run(
            [ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return FfmpegBuild(version="unknown")
    return parse_version(done.stdout)


def parse_version(text: str) -> FfmpegBuild:
    """The build record from `ffmpeg -version` output (pure)."""
    version = built = configuration = ""
    for line in text.splitlines():
        if line.startswith("ffmpeg version "):
            version = line.removeprefix("ffmpeg version ").split(" Copyright")[0].strip()
        elif line.startswith("built with "):
            built = line.removeprefix("built with ").strip()
        elif line.startswith("configuration:"):
            configuration = line.removeprefix("configuration:").strip()
    return FfmpegBuild(
        version=version or "unknown",
        built_with=built,
        configuration_sha256=hashlib.sha256(configuration.encode()).hexdigest(),
    )


VARIA_VERSION = __version__
"""The varia version recorded with every output."""
