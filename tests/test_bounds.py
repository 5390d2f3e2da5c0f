"""Strength bounds: the render activity re-draws recipes until one fits, or fails naming why.

Runs the real render activity (real FFmpeg) in Temporal's `ActivityEnvironment`, no server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from tests.helpers import render_task
from varia import media
from varia.activities import JobActivities
from varia.bounds import trial_ssim
from varia.clips import make_clip
from varia.config import Settings
from varia.errors import OUT_OF_BOUNDS
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
    # Below attempt 0's trial figure: attempt 0 is refused before any render.
    bounds = StrengthBounds(max_ssim=round(figures[0] - 0.0001, 4), max_attempts=5)
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
