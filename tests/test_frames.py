"""Sampled frames: an output's forced keyframe decoded alone is the frame a full decode gives,
other files fall back to decoding; the PNG encoder is lossless (no server)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from varia import frames, media
from varia.clips import make_clip
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.models import RenderTask
from varia.recipes import make_recipe
from varia.sampling import sample_times


def _decoded_in_full(path: str, times: list[float]) -> list[np.ndarray]:
    """The frames the generic path gives (decoding from the keyframe before each time)."""
    original = frames._keyframe_alone
    frames._keyframe_alone = lambda *args: None
    try:
        return [f.to_ndarray() for f in frames.frames_at(path, times)]
    finally:
        frames._keyframe_alone = original


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
    assert all(np.array_equal(a, b) for a, b in zip(fast, full, strict=True))
    mixed = [times[0], (times[0] + times[1]) / 2, times[1]]  # a decoder drained, then decoding
    fast = [f.to_ndarray() for f in frames.frames_at(str(out), mixed)]
    full = _decoded_in_full(str(out), mixed)
    assert all(np.array_equal(a, b) for a, b in zip(fast, full, strict=True))


def test_a_file_without_keyframes_there_falls_back_to_decoding(source: Path) -> None:
    times = [0.5, 1.0, 1.5]  # the generated clip's only keyframe is its first frame
    fast = [f.to_ndarray() for f in frames.frames_at(str(source), times, source=True)]
    full = _decoded_in_full(str(source), times)
    assert all(np.array_equal(a, b) for a, b in zip(fast, full, strict=True))
    assert len({a.tobytes() for a in fast}) == len(times)  # three different frames


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
