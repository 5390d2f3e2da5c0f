"""A render's recorded figures are those of the reference path: the output checked, then opened
again and its samples decoded, SSIM/PSNR from FFmpeg's filters, pHash from `imagehash` itself,
the source decoded afresh. Whatever the render's tail shares or caches to be cheaper, the
quality block, SHA-256 and record are the same for the same request (no server)."""

from __future__ import annotations

import statistics
import subprocess
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import av.filter
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


def fresh_graph_metrics(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[tuple[float, float]]:
    """SSIM and PSNR of each (reference, distorted) pair as first computed: a new graph per
    call, flushed with EOF."""
    height, width = pairs[0][0].shape
    graph = av.filter.Graph()
    graph.threads = 1
    base, gray = Fraction(1, 25), av.VideoFormat("gray")
    main = graph.add_buffer(width=width, height=height, format=gray, time_base=base)
    ref = graph.add_buffer(width=width, height=height, format=gray, time_base=base)
    split_main, split_ref = graph.add("split", "2"), graph.add("split", "2")
    ssim, psnr = graph.add("ssim"), graph.add("psnr")
    ssim_sink, psnr_sink = graph.add("buffersink"), graph.add("buffersink")
    main.link_to(split_main)
    ref.link_to(split_ref)
    split_main.link_to(ssim, 0, 0)
    split_ref.link_to(ssim, 0, 1)
    split_main.link_to(psnr, 1, 0)
    split_ref.link_to(psnr, 1, 1)
    ssim.link_to(ssim_sink)
    psnr.link_to(psnr_sink)
    graph.configure()
    for pts, (reference, distorted) in enumerate(pairs):
        for buffer, frame in ((main, distorted), (ref, reference)):
            video = av.VideoFrame.from_ndarray(frame, format="gray")
            video.pts = pts
            buffer.push(video)
    main.push(None)
    ref.push(None)
    return [
        (
            float(ssim_sink.pull().metadata["lavfi.ssim.Y"]),
            float(psnr_sink.pull().metadata["lavfi.psnr.psnr.y"]),
        )
        for _ in pairs
    ]


def reference_compare(sources: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[float, float]:
    pairs = [(s, quality._same_size(o, s)) for s, o in zip(sources, outputs, strict=True)]
    figures = [figure for pair in pairs for figure in fresh_graph_metrics([pair])]
    ssims = [ssim for ssim, _ in figures]
    psnrs = [min(psnr, quality.PSNR_CAP_DB) for _, psnr in figures]
    return round(statistics.fmean(ssims), 4), round(statistics.fmean(psnrs), 2)


def reference_quality(source: MediaInfo, out: str, output_duration_s: float) -> Quality:
    """The figures as the first measuring code computed them, from public primitives."""
    sources = [
        frames.luma(f) for f in frames.frames_at(source.path, sample_times(source.duration_s))
    ]
    outputs = [frames.luma(f) for f in frames.frames_at(out, sample_times(output_duration_s))]
    ssim, psnr = reference_compare(sources, outputs)
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


def test_a_reused_filter_graph_gives_a_fresh_graphs_figures() -> None:
    rng = np.random.default_rng(4)
    sizes = [(64, 64), (180, 320), (64, 64), (2, 2), (240, 320), (48, 64), (64, 64), (180, 320)]
    sizes += [(16, 16 + 2 * k) for k in range(quality.GRAPHS_PER_THREAD + 1)] + [(64, 64)]
    for round_ in range(3):
        for height, width in sizes:
            base = rng.integers(0, 256, (height, width), dtype=np.uint8)
            noise = rng.integers(-20 * round_, 20 * round_ + 1, base.shape)
            near = np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8)
            pairs = [(base, near), (base, base), (near, rng.permutation(near))]
            assert quality._ffmpeg_metrics(pairs) == fresh_graph_metrics(pairs)
            assert quality.compare([p[0] for p in pairs], [p[1] for p in pairs]) == (
                reference_compare([p[0] for p in pairs], [p[1] for p in pairs])
            )
    assert len(quality._graphs.by_size) <= quality.GRAPHS_PER_THREAD


def test_each_thread_measures_with_graphs_of_its_own() -> None:
    rng = np.random.default_rng(5)
    pairs = [tuple(rng.integers(0, 256, (2, 64, 64), dtype=np.uint8)) for _ in range(3)]
    expected = fresh_graph_metrics(pairs)  # type: ignore[arg-type]
    found: list[object] = []

    def measure_twice() -> None:
        found.extend(quality._ffmpeg_metrics(pairs) for _ in range(2))  # type: ignore[arg-type]

    threads = [threading.Thread(target=measure_twice) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [expected] * 8


@pytest.mark.parametrize("count", [2, 3, 255, 256, 257, 600])
def test_nearest_siblings_are_the_brute_forces_ties_to_the_lowest(count: int) -> None:
    rng = np.random.default_rng(count)
    pool = [
        [f"{int(v):016x}" for v in rng.integers(0, 2**63, 3)] for _ in range(max(2, count // 8))
    ]
    hashes = [pool[int(i)] for i in rng.integers(0, len(pool), count)]  # many ties
    bits = [[int(h, 16) for h in row] for row in hashes]

    def distance(a: int, b: int) -> int:
        return sum(bin(x ^ y).count("1") for x, y in zip(bits[a], bits[b], strict=True))

    distances, nearest = quality._nearest(hashes)
    for row in range(count):
        others = [(distance(row, other), other) for other in range(count) if other != row]
        assert (int(distances[row]), int(nearest[row])) == min(others)
