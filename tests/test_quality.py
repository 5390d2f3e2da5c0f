"""The measured difference: deterministic, ordered sensibly, near duplicates found (no server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varia import media
from varia.clips import make_clip
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.models import JobRequest, MediaInfo, Quality, Recipe, RenderResult, RenderTask
from varia.provenance import parse_version, sha256_of
from varia.quality import NEAR_DUPLICATE_BITS, hash_distance, measure, with_siblings
from varia.recipes import make_recipe
from varia.validation import RequestError, check_request, strength_bounds

WEAK = Recipe(brightness=0.01, crf=20)
STRONG = Recipe(
    brightness=0.06,
    contrast=1.08,
    saturation=1.2,
    hue_degrees=10.0,
    zoom=1.12,
    pan_x=1.0,
    pan_y=1.0,
    noise=8,
    crf=28,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> MediaInfo:
    clip = make_clip(tmp_path_factory.mktemp("q") / "src.mp4", seconds=2, size="320x240")
    return media.probe(str(clip))


def render(source: MediaInfo, recipe: Recipe, out: Path) -> tuple[RenderTask, list[str]]:
    """Render a recipe with the very argv the render activity uses; return task and argv."""
    task = RenderTask(
        job_dir=str(out.parent),
        input_index=0,
        variation=0,
        media=source,
        recipe=recipe,
        output_name=out.name,
    )
    argv = build_render_argv(Settings().ffmpeg_path(), task, out)
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return task, argv


def measured(source: MediaInfo, recipe: Recipe, out: Path) -> Quality:
    task, _ = render(source, recipe, out)
    return measure(source.path, source.duration_s, str(out), task.expected_duration_s)


def test_figures_are_deterministic_and_a_stronger_recipe_is_farther(
    source: MediaInfo, tmp_path: Path
) -> None:
    weak = measured(source, WEAK, tmp_path / "weak.mp4")
    strong = measured(source, STRONG, tmp_path / "strong.mp4")
    again = measured(source, STRONG, tmp_path / "strong-again.mp4")

    assert strong == again  # same recipe, same figures (a fresh render, measured afresh)
    assert 0.9 < weak.ssim <= 1.0 and weak.psnr_db > 30
    assert strong.ssim < weak.ssim - 0.2
    assert strong.psnr_db < weak.psnr_db - 10
    assert strong.phash_distance > weak.phash_distance
    assert len(strong.phash) == len(strong.positions) == 3


def test_a_near_duplicate_pair_is_detected(source: MediaInfo, tmp_path: Path) -> None:
    results = []
    recipes = [WEAK.model_copy(update={"crf": 21}), WEAK, STRONG]
    for variation, recipe in enumerate(recipes):
        out = tmp_path / f"v{variation}.mp4"
        quality = measured(source, recipe, out)
        results.append(
            RenderResult(
                input_index=0,
                variation=variation,
                path=out.name,
                bytes=1,
                duration_s=2.0,
                quality=quality,
            )
        )
    first, second, third = (r.quality for r in with_siblings(results))
    assert first and second and third
    assert (first.nearest_sibling, second.nearest_sibling) == ("v1.mp4", "v0.mp4")
    assert first.near_duplicate and second.near_duplicate
    assert first.sibling_distance == second.sibling_distance <= NEAR_DUPLICATE_BITS
    assert not third.near_duplicate and third.sibling_distance > NEAR_DUPLICATE_BITS


def test_the_recorded_argv_reproduces_the_output_byte_for_byte(
    source: MediaInfo, tmp_path: Path
) -> None:
    first = tmp_path / "first.mp4"
    _, argv = render(source, STRONG, first)
    again = tmp_path / "again.mp4"
    subprocess.run([*argv[:-1], f"file:{again}"], check=True, capture_output=True)
    assert sha256_of(again) == sha256_of(first)


def test_ffmpeg_version_is_parsed() -> None:
    text = (
        "ffmpeg version n9.0.2-17-g2a571b6068 Copyright (c) 2000-2026 the FFmpeg developers\n"
        "built with gcc 16.2.0\nconfiguration: --enable-gpl --enable-libx264\n"
    )
    build = parse_version(text)
    assert (build.version, build.built_with) == ("n9.0.2-17-g2a571b6068", "gcc 16.2.0")
    assert len(build.configuration_sha256) == 64
    assert parse_version("").version == "unknown"


hex64 = st.integers(min_value=0, max_value=2**64 - 1).map(lambda n: f"{n:016x}")
hashes = st.lists(hex64, min_size=3, max_size=3)


@settings(deadline=None)  # no timing thresholds in tests (shared CPU)
@given(st.lists(st.tuples(st.integers(0, 2), hashes), min_size=1, max_size=25))
def test_nearest_sibling_is_the_closest_other_output_of_the_same_input(
    outputs: list[tuple[int, list[str]]],
) -> None:
    results = [
        RenderResult(
            input_index=input_index,
            variation=i,
            path=f"o{i}.mp4",
            bytes=1,
            duration_s=1.0,
            quality=Quality(
                positions=[0.25, 0.5, 0.75],
                ssim=0.5,
                psnr_db=20.0,
                phash_distance=1.0,
                phash=phashes,
            ),
        )
        for i, (input_index, phashes) in enumerate(outputs)
    ]
    for result in with_siblings(results):
        assert result.quality is not None
        peers = [
            r for r in results if r.input_index == result.input_index and r.path != result.path
        ]
        if not peers:
            assert result.quality.nearest_sibling is None
            continue
        assert result.quality.phash and result.quality.sibling_distance is not None
        distances = {
            r.variation: hash_distance(result.quality.phash, r.quality.phash)
            for r in peers
            if r.quality
        }
        best = min(distances.values())
        assert result.quality.sibling_distance == best
        closest = min(v for v, d in distances.items() if d == best)  # ties: lowest variation
        assert result.quality.nearest_sibling == f"o{closest}.mp4"
        assert result.quality.near_duplicate == (best <= NEAR_DUPLICATE_BITS)


@settings(deadline=None)  # no timing thresholds in tests (shared CPU)
@given(hashes, hashes, hashes)
def test_hash_distance_is_a_metric(a: list[str], b: list[str], c: list[str]) -> None:
    assert hash_distance(a, a) == 0
    assert hash_distance(a, b) == hash_distance(b, a)
    assert 0 <= hash_distance(a, b) <= 64
    assert hash_distance(a, c) <= hash_distance(a, b) + hash_distance(b, c) + 0.02


@settings(deadline=None)  # no timing thresholds in tests (shared CPU)
@given(st.integers(0, 10**9), st.integers(0, 999), st.integers(0, 9999), st.integers(1, 20))
def test_attempt_zero_is_todays_recipe_and_redraws_differ(
    seed: int, input_index: int, variation: int, attempt: int
) -> None:
    assert make_recipe(seed, input_index, variation) == make_recipe(seed, input_index, variation, 0)
    assert make_recipe(seed, input_index, variation, attempt) != make_recipe(
        seed, input_index, variation
    )


def test_todays_recipe_is_unchanged() -> None:
    """Recorded histories and running jobs depend on it: the values of varia 0.1.0."""
    assert make_recipe(7, 0, 1).model_dump() == {
        "brightness": -0.0393, "contrast": 1.042, "saturation": 1.1888, "hue_degrees": 8.36,
        "zoom": 1.0854, "pan_x": 0.7094, "pan_y": 0.0898, "mirror": False, "speed": 1.029,
        "noise": 7, "crf": 27,
    }  # fmt: skip


def request(**bounds: object) -> JobRequest:
    return JobRequest.model_validate(
        {"inputs": ["/a.mp4"], "variations": 1, "output_dir": "/out", **bounds}
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"min_ssim": 1.5}, "min_ssim is 1.5"),
        ({"max_ssim": -0.1}, "max_ssim is -0.1"),
        ({"min_ssim": 0.9, "max_ssim": 0.8}, "min_ssim 0.9 is above max_ssim 0.8"),
        ({"min_ssim": 0.5, "max_attempts": 0}, "max_attempts is 0"),
        ({"min_ssim": 0.5, "max_attempts": 21}, "max_attempts is 21"),
        ({"max_attempts": 3}, "max_attempts is set but neither min_ssim nor max_ssim"),
    ],
)
def test_bad_strength_bounds_are_refused_naming_the_field(
    fields: dict[str, object], named: str
) -> None:
    with pytest.raises(RequestError, match=named):
        check_request(request(**fields))


def test_strength_bounds_default_to_five_attempts_and_none_without_bounds() -> None:
    assert strength_bounds(request()) is None
    bounds = strength_bounds(request(min_ssim=0.5))
    assert bounds is not None and bounds.max_attempts == 5
    assert bounds.admits(0.5) and bounds.admits(1.0) and not bounds.admits(0.49)


def test_cli_and_workflow_do_not_import_the_measuring_libraries() -> None:
    code = (
        "import sys, varia.cli, varia.workflows, varia.activities; "
        "print([m for m in ('numpy', 'PIL', 'imagehash', 'scipy') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
