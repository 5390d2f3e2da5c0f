"""A finished render's output: checked, measured and hashed (side by side), then renamed into
place; an output that fails its check is not committed and leaves no sheet frame (no server)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from varia import errors, media
from varia.clips import make_clip
from varia.config import Settings
from varia.ffmpeg.argv import build_render_argv
from varia.models import MediaInfo, Recipe, RenderTask
from varia.provenance import sha256_of
from varia.render_output import commit_output
from varia.sheet import cell_name


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> MediaInfo:
    clip = make_clip(tmp_path_factory.mktemp("ro") / "src.mp4", seconds=2, size="320x240")
    return media.probe(str(clip))


def rendered(source: MediaInfo, job_dir: Path) -> tuple[RenderTask, list[str], Path, Path]:
    """A task, its argv, and its temporary output (rendered) and final path (not yet there)."""
    task = RenderTask(
        job_dir=str(job_dir),
        input_index=0,
        variation=0,
        media=source,
        recipe=Recipe(brightness=0.03, crf=23),
        output_name="src_v0.mp4",
    )
    temp, final = job_dir / task.temp_name, job_dir / task.output_name
    argv = build_render_argv(Settings().ffmpeg_path(), task, temp)
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return task, argv, temp, final


async def test_a_whole_output_is_committed_with_its_check_hash_and_quality(
    source: MediaInfo, tmp_path: Path
) -> None:
    task, argv, temp, final = rendered(source, tmp_path)
    digest, size = sha256_of(temp), temp.stat().st_size
    result = await commit_output(temp, final, task, argv)
    assert final.is_file() and not temp.exists()
    assert result.path == final.name and result.bytes == size
    assert result.sha256 == digest == sha256_of(final)
    assert abs(result.duration_s - task.expected_duration_s) <= task.duration_tolerance_s
    assert result.quality is not None and result.quality.ssim > 0.5
    assert result.argv == argv and result.recipe == task.recipe
    assert (tmp_path / cell_name(final.name)).is_file()  # the sheet's frame, saved while measuring


async def test_an_output_that_fails_its_check_is_not_committed_and_leaves_no_cell(
    source: MediaInfo, tmp_path: Path
) -> None:
    task, argv, temp, final = rendered(source, tmp_path)
    longer = make_clip(tmp_path / "longer.mp4", seconds=4, size="320x240")
    shutil.copyfile(longer, temp)  # whole and measurable, but not the duration expected
    with pytest.raises(ApplicationError) as failure:
        await commit_output(temp, final, task, argv)
    assert failure.value.type == errors.OUTPUT_INVALID
    assert not final.exists()
    assert not (tmp_path / cell_name(final.name)).exists()
