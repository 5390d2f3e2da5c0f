"""Generate small test clips with FFmpeg's lavfi sources (for the demo, tests, benchmarks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from varia.config import Settings


def make_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    size: str = "320x240",
    rate: int = 25,
    audio: bool = True,
    ffmpeg: str | None = None,
) -> Path:
    """Write a `testsrc2` clip (with a `sine` tone unless `audio` is False) to `path`."""
    binary = ffmpeg or Settings().ffmpeg_path()
    argv = [
        binary,
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}:duration={seconds}",
    ]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(rate)]
    if audio:
        argv += ["-c:a", "aac", "-shortest"]
    argv.append(str(path))
    subprocess.run(argv, check=True, capture_output=True)
    return path
