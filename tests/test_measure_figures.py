"""A render's recorded figures are those of the reference path: the output checked, then opened
again and its samples decoded, SSIM/PSNR from FFmpeg's filters, pHash from `imagehash` itself,
the source decoded afresh. Whatever the render's tail shares or caches to be cheaper, the
quality block, SHA-256 and record are the same for the same request (no server)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from varia import frames, media, quality
from varia.clips import make_clip
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.models import MediaInfo, Quality, RenderTask
from varia.provenance import sha256_of
from varia.recipes import make_recipe, output_name
from varia.render_output import commit_output
from varia.sampling import SAMPLE_POSITIONS, sample_times


def reference_quality(source: MediaInfo, out: str, output_duration_s: float) -> Quality:
    """The figures as the first measuring code computed them, from public primitives."""
    sources = [
        frames.luma(f) for f in frames.frames_at(source.path, sample_times(source.duration_s))
    ]
    outputs = [frames.luma(f) for f in frames.frames_at(out, sample_times(output_duration_s))]
    ssim, psnr = quality.compare(sources, outputs)
    source_hashes = [str(imagehash.phash(Image.fromarray(s))) for s in sources]
    output_hashes = [str(imagehash.phash(Image.fromarray(o))) for o in outputs]
    return Quality(
        positions=list(SAMPLE_POSITIONS),
        ssim=ssim,
        psnr_db=psnr,
        phash_distance=quality.hash_distance(source_hashes, output_hashes),
        phash=output_hashes,
    )


@pytest.fixture(scope="module", params=[("0.2", "64x64"), ("2", "320x240"), ("1", "642x362")])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MediaInfo:
    seconds, size = request.param
    clip = make_clip(
        tmp_path_factory.mktemp("fig") / f"src-{size}.mp4",
        seconds=float(seconds),
        size=size,
        audio=False,
    )
    return media.probe(str(clip))


@pytest.mark.parametrize("variation", [0, 1, 5, 70])
async def test_a_renders_figures_are_the_reference_paths(
    source: MediaInfo, tmp_path: Path, variation: int
) -> None:
    task = RenderTask(
        job_dir=str(tmp_path),
        input_index=0,
        variation=variation,
        media=source,
        recipe=make_recipe(11, 0, variation),
        output_name=output_name("src", variation, 100),
    )
    temp, final = tmp_path / task.temp_name, tmp_path / task.output_name
    argv = build_render_argv(Settings().ffmpeg_path(), task, temp)
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    digest = sha256_of(temp)
    expected = reference_quality(source, str(temp), task.expected_duration_s)

    result = await commit_output(temp, final, task, argv)

    assert result.quality == expected
    assert result.sha256 == digest
    assert result.duration_s == round(
        media.check_output(str(final), task.expected_duration_s, task.duration_tolerance_s), 3
    )


def test_phash_is_imagehashs_on_any_picture() -> None:
    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in [(64, 64)] * 40]
    pictures += [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in [(180, 320), (2, 2)]]
    pictures += [np.full((32, 32), 128, dtype=np.uint8), np.zeros((48, 64), dtype=np.uint8)]
    ramp = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    pictures += [ramp, ramp.T.copy(), ramp[:, ::-1].copy()]
    expected = [str(imagehash.phash(Image.fromarray(p))) for p in pictures]
    assert [quality.phash(p) for p in pictures] == expected
    assert quality.phashes(pictures) == expected
    assert quality.phashes(pictures[:40]) == expected[:40]  # one batch of equal sizes
