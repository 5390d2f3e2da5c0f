"""The output check rejects an output cut short anywhere after its index: by a cut packet,
or, cut exactly between packets, by a stream that ends before its stated duration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from varia.config import Settings
from varia.media import MediaError, check_output, probe

SHAPES = {
    "tiny, video only": ["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25:duration=0.2"],
    "small, with audio": [
        "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=1",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
    ],
}  # fmt: skip


@pytest.fixture(scope="module", params=list(SHAPES))
def output(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output as varia writes them (H.264, AAC, `+faststart`: the index comes first)."""
    path = tmp_path_factory.mktemp("truncation") / "out.mp4"
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart"]
    subprocess.run(
        [Settings().ffmpeg_path(), "-v", "error", *SHAPES[request.param], *codecs, str(path)],
        check=True,
    )
    return path


def _duration_s(path: Path) -> float:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.duration is not None and video.time_base is not None
        return float(video.duration * video.time_base)


def _packet_ends(path: Path) -> list[int]:
    """The byte offset where each packet's data ends (the cuts that cut no packet)."""
    with av.open(str(path)) as container:
        return sorted(
            packet.pos + packet.size
            for packet in container.demux()
            if packet.size and packet.pos is not None
        )


def _rejected(path: Path, size: int, tmp_path: Path, duration: float) -> bool:
    cut = tmp_path / f"cut-{size}.mp4"
    cut.write_bytes(path.read_bytes()[:size])
    try:
        check_output(str(cut), duration, 0.12)
    except MediaError:
        return True
    return False


def test_the_whole_output_passes(output: Path) -> None:
    duration = _duration_s(output)
    assert check_output(str(output), duration, 0.12) == pytest.approx(duration)


def test_a_cut_between_any_two_packets_is_caught(output: Path, tmp_path: Path) -> None:
    duration, size = _duration_s(output), output.stat().st_size
    kept = [end for end in _packet_ends(output) if end < size]
    assert kept, "the output has more than one packet"
    assert [end for end in kept if not _rejected(output, end, tmp_path, duration)] == []


@settings(max_examples=40, deadline=None)
@given(share=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_a_cut_anywhere_is_caught(
    output: Path, tmp_path_factory: pytest.TempPathFactory, share: float
) -> None:
    duration, size = _duration_s(output), output.stat().st_size
    cut_at = int(size * share)
    assert _rejected(output, cut_at, tmp_path_factory.mktemp("cut"), duration), cut_at


@settings(max_examples=40, deadline=None)
@given(share=st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
@example(share=0.05078125)  # cut before the audio's setup: the channel check met no decoder
def test_a_cut_input_gets_a_clear_error_or_passes(
    output: Path, tmp_path_factory: pytest.TempPathFactory, share: float
) -> None:
    """An input is judged more leniently (its last packets may be missing), but a cut one
    never breaks prepare with anything but `MediaError`, whose message names the file."""
    cut = tmp_path_factory.mktemp("cut-input") / "input.mp4"
    cut.write_bytes(output.read_bytes()[: int(output.stat().st_size * share)])
    try:
        probe(str(cut))
    except MediaError as err:
        assert str(cut) in str(err)
