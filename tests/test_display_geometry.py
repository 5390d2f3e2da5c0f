"""How an output is shown: a rotation flag (a phone's portrait video) carries over with the
frames as stored, figures match the unflagged pixels, mirror flips left-right as shown, the
sheet shows them upright; and the pixel aspect stays the input's."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from temporalio.testing import ActivityEnvironment

from varia import jobdir, media, output_record
from varia.activities import JobActivities
from varia.cleanup import clean_up_job
from varia.clips import make_clip
from varia.config import Settings
from varia.frames import upright
from varia.models import CleanupRequest, Recipe, RenderResult, RenderTask
from varia.recipes import make_recipe
from varia.sheet import SHEET_NAME, layout


def flagged(clip: Path, degrees: int) -> Path:
    """A copy of `clip` whose video carries a rotation flag (the pixels are the same)."""
    out = clip.with_name(f"{clip.stem}-rot{degrees}.mp4")
    subprocess.run(
        [Settings().ffmpeg_path(), "-loglevel", "error", "-y", "-display_rotation", str(degrees),
         "-i", str(clip), "-c", "copy", str(out)],
        check=True,
    )  # fmt: skip
    return out


def first_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


UNMIRRORED = make_recipe(5, 0, 1).model_copy(update={"mirror": False})


async def render(clip: Path, job_dir: Path, name: str, recipe: Recipe = UNMIRRORED) -> RenderResult:
    task = RenderTask(
        job_dir=str(job_dir),
        input_index=0,
        variation=1,
        media=media.probe(str(clip)),
        recipe=recipe,
        output_name=name,
    )
    brief = await ActivityEnvironment().run(JobActivities(Settings()).render, task)
    [result] = output_record.with_records(job_dir, [brief])  # with its quality
    return result


@pytest.mark.parametrize("degrees", [90, 180, -90])
async def test_a_flagged_input_renders_the_same_pixels_and_keeps_its_flag(
    tmp_path: Path, degrees: int
) -> None:
    base = make_clip(tmp_path / "base.mp4", seconds=1, size="320x180")
    phone = flagged(base, degrees)
    job_dir = jobdir.open_job_dir(tmp_path, "job")
    plain = await render(base, job_dir, "plain.mp4")
    turned = await render(phone, job_dir, "turned.mp4")

    plain_frame, turned_frame = (
        first_frame(job_dir / "plain.mp4"),
        first_frame(job_dir / "turned.mp4"),
    )
    assert (turned_frame.width, turned_frame.height) == (320, 180)  # as stored, not squashed
    assert turned_frame.rotation == first_frame(phone).rotation != 0  # the flag carried over
    assert np.array_equal(
        plain_frame.to_ndarray(format="gray"), turned_frame.to_ndarray(format="gray")
    )
    assert plain.quality is not None and turned.quality is not None
    assert turned.quality.ssim == plain.quality.ssim
    assert turned.quality.phash == plain.quality.phash


@pytest.mark.parametrize("degrees", [90, 180, -90])
async def test_a_mirrored_variation_is_mirrored_left_to_right_as_shown(
    tmp_path: Path, degrees: int
) -> None:
    phone = flagged(make_clip(tmp_path / "base.mp4", seconds=1, size="320x180"), degrees)
    job_dir = jobdir.open_job_dir(tmp_path, "job")
    await render(phone, job_dir, "mirrored.mp4", Recipe(mirror=True, crf=18))
    shown = upright(first_frame(job_dir / "mirrored.mp4")).to_ndarray(format="gray")
    source = upright(first_frame(phone)).to_ndarray(format="gray")
    as_mirrored = np.abs(shown.astype(int) - np.fliplr(source)).mean()
    as_flipped = np.abs(shown.astype(int) - np.flipud(source)).mean()
    assert as_mirrored < 3 < as_flipped, (as_mirrored, as_flipped)


async def test_the_sheet_shows_a_portrait_phone_video_upright(tmp_path: Path) -> None:
    phone = flagged(make_clip(tmp_path / "base.mp4", seconds=1, size="320x180"), 90)
    job_dir = jobdir.open_job_dir(tmp_path, "job")
    result = await render(phone, job_dir, "phone_v1.mp4")
    clean_up_job(
        CleanupRequest(
            job_id="job",
            job_dir=str(job_dir),
            state="completed",
            inputs=[str(phone)],
            stems=["phone"],
            variations=2,
            seed=5,
            results=[result],
            failed=0,
        )
    )
    plan = layout([2], 180, 320)  # the source and its output, both upright: portrait cells
    with Image.open(job_dir / SHEET_NAME) as sheet:
        assert sheet.size == (plan.width, plan.height)
        assert plan.thumb_height > 180  # taller than wide


def with_pixel_aspect(clip: Path, aspect: str) -> Path:
    out = clip.with_name(f"{clip.stem}-sar.mp4")
    subprocess.run(
        [Settings().ffmpeg_path(), "-loglevel", "error", "-y", "-i", str(clip),
         "-vf", f"setsar={aspect}", "-c:v", "libx264", "-preset", "ultrafast", str(out)],
        check=True,
    )  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("size", "aspect"),
    [("320x180", "1/1"), ("320x180", "2/1"), ("16x400", "1/1"), ("90x60", "8/9")],
)
async def test_a_zoomed_variation_keeps_the_inputs_pixel_aspect(
    tmp_path: Path, size: str, aspect: str
) -> None:
    """The zoom's crop is rounded to whole pixels, and the scaler kept the crop's shape by
    skewing the pixel aspect: 171:170 at 320x180, 0.917 for a 16-pixel-wide input."""
    clip = with_pixel_aspect(make_clip(tmp_path / "clip.mp4", seconds=1, size=size), aspect)
    job_dir = jobdir.open_job_dir(tmp_path, "job")
    zoomed = Recipe(zoom=1.0737, pan_x=0.3, pan_y=0.6, crf=23)
    await render(clip, job_dir, "zoomed.mp4", zoomed)
    with av.open(str(job_dir / "zoomed.mp4")) as container:
        kept = container.streams.video[0].sample_aspect_ratio
    assert kept == Fraction(aspect), (kept, aspect)
