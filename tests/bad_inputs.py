"""Builders of hostile inputs: playlists, lists and sequences that open other files, and tiny
files whose headers declare a huge frame or an endless duration (issue 9)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

from varia.config import Settings


def _ffmpeg(*args: str) -> None:
    argv = [Settings().ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    subprocess.run([*argv, *args], check=True, capture_output=True)


def hls_playlist(path: Path, segment_dir: Path, seconds: float = 3.0) -> Path:
    """A real HLS playlist (FFmpeg's hls muxer) at `path` whose one segment lives in
    `segment_dir`, named by its absolute path; returns the segment's path."""
    segment_dir.mkdir(parents=True, exist_ok=True)
    made = segment_dir / "made.m3u8"
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
        "-f", "hls", "-hls_time", str(seconds + 1), "-hls_list_size", "0",
        "-hls_segment_filename", str(segment_dir / "seg%d.ts"), str(made),
    )  # fmt: skip
    segment = segment_dir / "seg0.ts"
    text = made.read_text().replace("\nseg0.ts\n", f"\n{segment}\n")
    assert str(segment) in text, text
    made.unlink()
    path.write_text(text)
    return segment


def network_playlist(path: Path, url: str) -> Path:
    """An HLS playlist whose segment is a network URL."""
    path.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:4.000000,\n{url}\n#EXT-X-ENDLIST\n"
    )
    return path


def concat_list(path: Path, clip: Path) -> Path:
    """An `ffconcat` list naming a sibling of `path` (a copy of `clip`): the concat demuxer's
    safe mode accepts it, so it would open that file."""
    sibling = path.parent / "part.mp4"
    shutil.copyfile(clip, sibling)
    path.write_text(f"ffconcat version 1.0\nfile {sibling.name}\n")
    return path


def image_sequence(directory: Path) -> Path:
    """`frame%03d.png` (a real PNG under that literal name) with frames 001 to 003 beside it:
    the image2 demuxer reads the numbered files."""
    directory.mkdir(parents=True, exist_ok=True)
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5", "-frames:v", "3",
        str(directory / "frame%03d.png"),
    )  # fmt: skip
    pattern = directory / "frame%03d.png"
    shutil.copyfile(directory / "frame001.png", pattern)
    return pattern


def raw_avi(path: Path, size: str = "16x16", declare: tuple[int, int] | None = None) -> Path:
    """A 1 s AVI of raw video (`size` frames); with `declare`, its headers claim that frame size
    instead (raw video has no size of its own: the container's header is all a reader has)."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=5:duration=1",
        "-c:v", "rawvideo", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    if declare is None:
        return path
    data = bytearray(path.read_bytes())
    main_header = data.find(b"avih")  # dwWidth, dwHeight at +8+32
    bitmap_header = data.find(b"strf")  # biSize, biWidth, biHeight at +8
    assert main_header > 0 and bitmap_header > 0
    struct.pack_into("<II", data, main_header + 8 + 32, *declare)
    struct.pack_into("<ii", data, bitmap_header + 8 + 4, *declare)
    path.write_bytes(bytes(data))
    return path


def endless_mkv(path: Path, seconds: float = 1e12) -> Path:
    """A 1 s Matroska file whose segment header declares a duration of `seconds`."""
    real = path.with_suffix(".real.mkv")
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1",
        "-c:v", "libx264", "-preset", "ultrafast", str(real),
    )  # fmt: skip
    data = bytearray(real.read_bytes())
    real.unlink()
    duration = data.find(b"\x44\x89\x88")  # EBML id Duration, an 8-byte float in ms
    assert duration > 0
    struct.pack_into(">d", data, duration + 3, seconds * 1000)
    path.write_bytes(bytes(data))
    return path


def many_streams_mkv(path: Path, clip: Path, audio_streams: int) -> Path:
    """`clip`'s video and its audio stream mapped `audio_streams` times (stream copy)."""
    maps = ["-map", "0:v:0"] + ["-map", "0:a:0"] * audio_streams
    _ffmpeg("-i", str(clip), *maps, "-c", "copy", str(path))
    return path


def audio_with_cover_art(path: Path, seconds: float = 2.0) -> Path:
    """An `.m4a` whose only video stream is an attached picture (a song with its cover)."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"sine=duration={seconds}",
        "-f", "lavfi", "-i", "testsrc2=size=64x64:duration=0.04",
        "-map", "0", "-map", "1", "-c:a", "aac", "-c:v", "png",
        "-disposition:v", "attached_pic", "-frames:v", "1", str(path),
    )  # fmt: skip
    return path


def many_channel_audio(path: Path, channels: int, seconds: float = 1.0) -> Path:
    """A clip whose audio has `channels` channels (PCM in .mov)."""
    layout = {8: "7.1", 16: "hexadecagonal"}[channels]
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size=160x120:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=duration={seconds},aformat=channel_layouts={layout}",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "pcm_s16le", str(path),
    )  # fmt: skip
    return path


def cover_before_video(path: Path, clip: Path) -> Path:
    """A Matroska file whose first video stream is a cover picture and whose second is `clip`'s
    video (an audio stream follows)."""
    cover = path.with_name("cover.png")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(cover))
    _ffmpeg(
        "-i", str(clip), "-i", str(cover), "-map", "1", "-map", "0",
        "-c:v:0", "mjpeg", "-c:v:1", "copy", "-c:a", "copy",
        "-disposition:v:0", "attached_pic", str(path),
    )  # fmt: skip
    return path
