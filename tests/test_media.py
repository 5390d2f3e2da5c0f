"""Probing inputs and proving outputs whole with PyAV."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Clips
from tests.helpers import wait_for
from varia.config import Settings
from varia.media import MediaError, check_output, probe


def test_probe_reads_what_the_plan_needs(clips: Clips) -> None:
    info = probe(str(clips.short))
    assert (info.width, info.height, info.fps, info.has_audio) == (320, 240, 25.0, True)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert probe(str(clips.silent)).has_audio is False


async def test_a_killed_encode_is_rejected(clips: Clips, tmp_path: Path) -> None:
    """SIGKILL leaves an MP4 without its index: it must never pass as an output."""
    out = tmp_path / "killed.mp4"
    proc = subprocess.Popen(
        [
            Settings().ffmpeg_path(),
            "-loglevel",
            "error",
            "-i",
            str(clips.long),
            "-c:v",
            "libx264",
            "-threads",
            "1",
            "-f",
            "mp4",
            str(out),
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        await wait_for(
            lambda: out.exists() and out.stat().st_size > 50_000, what="FFmpeg to write data"
        )
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(MediaError):
        check_output(str(out), 20.0, 0.2)


def test_a_short_output_is_rejected(clips: Clips) -> None:
    assert check_output(str(clips.short), 2.0, 0.12) == pytest.approx(2.0, abs=0.05)
    with pytest.raises(MediaError, match=r"expected about 3\.00s"):
        check_output(str(clips.short), 3.0, 0.12)


def test_truncated_faststart_file_is_caught(clips: Clips, tmp_path: Path) -> None:
    whole = tmp_path / "fs.mp4"
    subprocess.run(
        [
            Settings().ffmpeg_path(),
            "-loglevel",
            "error",
            "-i",
            str(clips.long),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            str(whole),
        ],
        check=True,
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MediaError, match="truncated"):
        probe(str(cut))
