"""Sampled frames are the frames a plain seek and decode for each time gives: an output's
forced keyframes decoded alone, a source's samples decoded on in one pass with unreferenced
frames skipped, in several codecs and containers and at any times; the PNG encoder is lossless
(no server)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks.plain import frames_by_plain_seeks
from varia import frames, media
from varia.clips import make_clip
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.models import RenderTask
from varia.recipes import make_recipe
from varia.sampling import sample_times


def _decoded_in_full(path: str, times: list[float]) -> list[np.ndarray]:
    """The reference: a plain seek and decode for each time, none of varia's savings. (Not a
    decode from the file's start: a keyframe within a frame after the time is that frame,
    where forced keyframes sit in varia's outputs.)"""
    return [frame.to_ndarray() for frame in frames_by_plain_seeks(path, times)]


def _same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a, b) for a, b in zip(first, second, strict=True)
    )


CODECS = {
    # long groups of pictures with B-frames (unreferenced ones too): what sources look like
    "h264.mp4": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "60"],
    "hevc.mp4": ["-c:v", "libx265", "-x265-params", "log-level=error:keyint=60"],
    "mpeg4.avi": ["-c:v", "mpeg4", "-bf", "2", "-g", "60", "-q:v", "5"],
    "vp9.webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "60"],
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4 s 25 fps clip in each of `CODECS` (keyframes 2.4 s apart)."""
    root = tmp_path_factory.mktemp("codecs")
    made = {}
    for name, codec in CODECS.items():
        path = root / name
        lavfi = "testsrc2=size=320x240:rate=25:duration=4"
        argv = [Settings().ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i", lavfi, *codec]
        subprocess.run([*argv, str(path)], check=True, capture_output=True)
        made[name] = path
    return made


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("f") / "src.mp4", seconds=2, size="320x240")


@pytest.mark.parametrize("variation", [0, 1, 2, 3])
def test_an_outputs_samples_are_its_keyframes_decoded_alone(
    source: Path, tmp_path: Path, variation: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = RenderTask(
        job_dir=str(tmp_path),
        input_index=0,
        variation=variation,
        media=media.probe(str(source)),
        recipe=make_recipe(7, 0, variation),
        output_name="out.mp4",
    )
    out = tmp_path / "out.mp4"
    argv = build_render_argv(Settings().ffmpeg_path(), task, out)
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    times = sample_times(task.expected_duration_s)
    alone: list[bool] = []
    original = frames._keyframe_alone

    def counted(*args: object) -> object:
        frame = original(*args)  # type: ignore[arg-type]
        alone.append(frame is not None)
        return frame

    monkeypatch.setattr(frames, "_keyframe_alone", counted)
    fast = [f.to_ndarray() for f in frames.frames_at(str(out), times)]
    monkeypatch.undo()
    assert alone == [True] * len(times)
    full = _decoded_in_full(str(out), times)
    assert _same(fast, full)
    mixed = [times[0], (times[0] + times[1]) / 2, times[1]]  # a decoder drained, then decoding
    fast = [f.to_ndarray() for f in frames.frames_at(str(out), mixed)]
    full = _decoded_in_full(str(out), mixed)
    assert _same(fast, full)


def test_a_file_without_keyframes_there_falls_back_to_decoding(source: Path) -> None:
    times = [0.5, 1.0, 1.5]  # the generated clip's only keyframe is its first frame
    fast = [f.to_ndarray() for f in frames.frames_at(str(source), times, source=True)]
    full = _decoded_in_full(str(source), times)
    assert _same(fast, full)
    assert len({a.tobytes() for a in fast}) == len(times)  # three different frames


@pytest.mark.parametrize("name", list(CODECS))
def test_a_sources_samples_are_the_plain_decodes_frames_in_every_codec(
    encoded: dict[str, Path], name: str
) -> None:
    path = str(encoded[name])
    duration = frames.duration_s(path, source=True)
    for times in (
        sample_times(duration),  # what measuring asks
        [3.9, 0.3, 2.0, 2.0],  # out of order, repeated
        [0.0, 2.36, 2.4, 2.44, 3.98],  # around the second keyframe, the last frame
        [4.5],  # past the end: the last frame
    ):
        got = [f.to_ndarray() for f in frames.frames_at(path, times, source=True)]
        assert _same(got, _decoded_in_full(path, times)), (name, times)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_frames_at_any_times_are_the_plain_decodes_frames(
    encoded: dict[str, Path], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(CODECS)))
    moments = st.integers(min_value=0, max_value=4100).map(lambda ms: ms / 1000)
    times = data.draw(st.lists(moments, min_size=1, max_size=5))
    path = str(encoded[name])
    got = [f.to_ndarray() for f in frames.frames_at(path, times, source=True)]
    assert _same(got, _decoded_in_full(path, times)), (name, times)


def test_samples_in_one_group_of_pictures_are_decoded_in_one_pass(
    encoded: dict[str, Path],
) -> None:
    """0.5, 1.0 and 2.0 s share the first group of pictures: the seeks are the first sample's
    (a keyframe there? no: to the one before), and fewer frames come out of the decoder than
    the 51 up to 2.0 s (a seek for each sample decoded 13 + 26 + 51)."""
    path = str(encoded["h264.mp4"])
    with av.open(path) as container:
        stream = container.streams.video[0]
        with frames._Sampler(container, stream, 0.04, path, source=False) as sampler:
            for t in (0.5, 1.0, 2.0):
                sampler.frame_at(t)
    assert sampler.seeks == 2
    assert sampler.decoded < 51  # on in one pass, unreferenced B-frames before 2.0 s skipped


def test_fractions_are_of_the_duration_and_png_bytes_are_lossless(
    source: Path, tmp_path: Path
) -> None:
    duration = frames.duration_s(str(source), source=True)
    (by_fraction,) = frames.frames_at(str(source), fractions=[0.5], source=True)
    (by_time,) = frames.frames_at(str(source), [0.5 * duration], source=True)
    assert np.array_equal(by_fraction.to_ndarray(), by_time.to_ndarray())
    rgb = frames.scaled_rgb(by_time, 160, 160)
    assert (rgb.width, rgb.height) == (160, 120)
    path = tmp_path / "cell.png"
    path.write_bytes(frames.png_bytes(rgb))
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert np.array_equal(np.asarray(picture.convert("RGB")), rgb.to_ndarray())
