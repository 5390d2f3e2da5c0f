"""Strength bounds: the render activity re-draws recipes until one fits, or fails naming why.

Runs the real render activity (real FFmpeg) in Temporal's `ActivityEnvironment`, no server.
"""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tests.helpers import render_task
from varia import bounds as bounds_module
from varia import media
from varia.activities import JobActivities
from varia.bounds import TRIAL_TOLERANCE, trial_ssim
from varia.clips import make_clip
from varia.config import Settings
from varia.errors import BAD_INPUT, OUT_OF_BOUNDS
from varia.models import MediaInfo, RenderTask, StrengthBounds
from varia.names import record_name
from varia.output_record import is_brief, with_records
from varia.recipes import make_recipe
from varia.sheet import cell_name

SEED = 3


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> MediaInfo:
    clip = make_clip(tmp_path_factory.mktemp("b") / "src.mp4", seconds=1, size="320x240")
    return media.probe(str(clip))


def task_for(source: MediaInfo, job_dir: Path, bounds: StrengthBounds) -> RenderTask:
    return render_task(source, job_dir, seed=SEED, bounds=bounds)


async def trials(source: MediaInfo, tmp_path: Path, count: int) -> list[float]:
    ffmpeg = Settings().ffmpeg_path()
    figures = []
    for attempt in range(count):
        task = task_for(source, tmp_path, StrengthBounds()).model_copy(
            update={"recipe": make_recipe(SEED, 0, 0, attempt)}
        )
        figures.append(await trial_ssim(ffmpeg, task))
    return figures


async def test_a_recipe_outside_the_bounds_is_redrawn_and_the_attempts_recorded(
    source: MediaInfo, tmp_path: Path
) -> None:
    figures = await trials(source, tmp_path, 5)
    # More than the trial's tolerance below attempt 0's trial: refused before any render.
    bounds = StrengthBounds(
        max_ssim=round(figures[0] - TRIAL_TOLERANCE - 0.0001, 4), max_attempts=5
    )
    assert any(bounds.admits(f) for f in figures[1:]), figures

    brief = await ActivityEnvironment().run(
        JobActivities(Settings()).render, task_for(source, tmp_path, bounds)
    )

    assert is_brief(brief) and not brief.attempts  # the record is on disk, not in the history
    (result,) = with_records(tmp_path, [brief])
    first, *_, last = result.attempts
    assert (first.attempt, first.stage, first.accepted) == (0, "trial", False)
    assert first.ssim == figures[0]
    assert last.accepted and last.stage == "render"
    assert all(not a.accepted for a in result.attempts[:-1])
    assert result.quality is not None and bounds.admits(result.quality.ssim)
    assert result.quality.ssim == last.ssim
    assert result.recipe == make_recipe(SEED, 0, 0, last.attempt)  # the recipe actually used
    # nothing else left: the output, the frame its render saved for the contact sheet, its record
    assert {p.name for p in tmp_path.iterdir()} == {
        "src_v000.mp4",
        cell_name("src_v000.mp4"),
        record_name("src_v000.mp4"),
    }


async def test_no_recipe_within_the_bounds_fails_the_variation_naming_them(
    source: MediaInfo, tmp_path: Path
) -> None:
    bounds = StrengthBounds(min_ssim=0.999, max_attempts=3)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            JobActivities(Settings()).render, task_for(source, tmp_path, bounds)
        )
    error = caught.value
    assert error.type == OUT_OF_BOUNDS and error.non_retryable
    assert "variation 0: no recipe within SSIM from 0.999 to 1 after 3 attempt(s)" in str(error)
    attempts = error.details[0]
    assert [a["attempt"] for a in attempts] == [0, 1, 2]
    assert not any(a["accepted"] for a in attempts)
    assert list(tmp_path.iterdir()) == []  # no output, no partial file


async def test_a_trial_just_outside_the_bounds_is_rendered_and_its_output_decides(
    source: MediaInfo, tmp_path: Path
) -> None:
    (figure,) = await trials(source, tmp_path, 1)
    bounds = StrengthBounds(min_ssim=round(figure + TRIAL_TOLERANCE / 2, 4), max_attempts=1)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            JobActivities(Settings()).render, task_for(source, tmp_path, bounds)
        )
    (attempt,) = caught.value.details[0]
    assert attempt["stage"] == "render" and not attempt["accepted"]
    assert abs(attempt["ssim"] - figure) <= TRIAL_TOLERANCE
    assert list(tmp_path.iterdir()) == []


SPARSE_CLIPS = {
    # a slide every 2 s: no frame starts at the 1.5 s and 4.5 s samples
    "slideshow": ["testsrc2=s=320x180:r=0.5:d=6", "sine=d=6"],
    # 3 frames: the 0.09 s sample lies past the last frame's start
    "tenth_of_a_second": ["testsrc2=s=320x180:r=25:d=0.1", "sine=d=0.1"],
    # a single frame, shown for the whole clip
    "one_frame": ["testsrc2=s=320x180:r=25:d=1", "sine=d=1", "-frames:v", "1"],
}


@pytest.fixture(scope="module", params=sorted(SPARSE_CLIPS))
def sparse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> MediaInfo:
    """A clip in which no frame starts at or after some sample time."""
    video, audio, *more = SPARSE_CLIPS[request.param]
    path = tmp_path_factory.mktemp("sparse") / f"{request.param}.mp4"
    argv = [Settings().ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-nostdin"]
    argv += ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, *more]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)]
    subprocess.run(argv, check=True, capture_output=True)
    return media.probe(str(path))


async def test_bounds_work_on_a_sparse_clip(sparse: MediaInfo, tmp_path: Path) -> None:
    bounds = StrengthBounds(min_ssim=0.1)
    brief = await ActivityEnvironment().run(
        JobActivities(Settings()).render, task_for(sparse, tmp_path, bounds)
    )
    (result,) = with_records(tmp_path, [brief])
    assert result.quality is not None and bounds.admits(result.quality.ssim)
    assert result.attempts[-1].accepted and result.attempts[-1].ssim == result.quality.ssim


@pytest.mark.parametrize(
    "bounds",
    [StrengthBounds(min_ssim=0.99, max_attempts=1), StrengthBounds(max_ssim=0.0, max_attempts=1)],
    ids=["min_ssim", "max_ssim"],
)
async def test_a_sparse_clip_out_of_bounds_fails_naming_the_bounds(
    sparse: MediaInfo, bounds: StrengthBounds, tmp_path: Path
) -> None:
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            JobActivities(Settings()).render, task_for(sparse, tmp_path, bounds)
        )
    assert caught.value.type == OUT_OF_BOUNDS and caught.value.non_retryable
    assert f"no recipe within {bounds.describe()} after 1 attempt(s)" in str(caught.value)


async def test_a_trial_without_a_frame_is_a_clear_non_retryable_error(
    source: MediaInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bounds_module, "trial_argv", lambda *args: ["true"])  # writes nothing
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            JobActivities(Settings()).render,
            task_for(source, tmp_path, StrengthBounds(min_ssim=0.1)),
        )
    error = caught.value
    assert error.type == BAD_INPUT and error.non_retryable
    assert error.message.startswith(f"{source.path} variation 0: ")
    assert "trial got no frame" in error.message


@pytest.fixture(scope="module")
def testsrc(tmp_path_factory: pytest.TempPathFactory) -> MediaInfo:
    """The report's clip: 2 s of testsrc2, 25 fps, 320x180, with audio."""
    clip = make_clip(tmp_path_factory.mktemp("t") / "base.mp4", seconds=2, size="320x180")
    return media.probe(str(clip))


AGREEMENT_RECIPES = 30
"""Recipes the agreement test renders: 10 variations of `SEED`, 3 attempts each (every noise
level from 0 to 8 is among them)."""


async def test_the_trial_reads_what_the_output_measures(testsrc: MediaInfo, tmp_path: Path) -> None:
    """The trial's SSIM is within `TRIAL_TOLERANCE` of the rendered output's measured SSIM for
    every recipe, and on average it reads neither high nor low (noise made it read low: the
    encode smooths the noise away)."""
    ffmpeg, activities = Settings().ffmpeg_path(), JobActivities(Settings())
    tasks = [
        render_task(testsrc, tmp_path, seed=SEED, variation=index).model_copy(
            update={"recipe": make_recipe(SEED, 0, index // 3, index % 3)}
        )
        for index in range(AGREEMENT_RECIPES)
    ]
    assert {task.recipe.noise for task in tasks} == set(range(9))
    trials = [await trial_ssim(ffmpeg, task) for task in tasks]
    briefs = [await ActivityEnvironment().run(activities.render, task) for task in tasks]
    measured = [result.quality.ssim for result in with_records(tmp_path, briefs) if result.quality]

    gaps = [round(trial - output, 4) for trial, output in zip(trials, measured, strict=True)]
    assert max(abs(gap) for gap in gaps) <= TRIAL_TOLERANCE, gaps
    assert abs(statistics.fmean(gaps)) <= 0.015, gaps


async def test_a_noisy_recipe_whose_output_fits_is_kept(testsrc: MediaInfo, tmp_path: Path) -> None:
    """The report: variation 1 of seed 7 (noise 7) measures 0.57 rendered, yet its trial read
    0.46 and `min_ssim` 0.5 refused it without a render."""
    task = render_task(testsrc, tmp_path, seed=7, variation=1, bounds=StrengthBounds(min_ssim=0.5))
    assert task.recipe.noise == 7

    brief = await ActivityEnvironment().run(JobActivities(Settings()).render, task)

    (result,) = with_records(tmp_path, [brief])
    assert [(a.attempt, a.stage, a.accepted) for a in result.attempts] == [(0, "render", True)]
    assert result.quality is not None and result.quality.ssim >= 0.5
