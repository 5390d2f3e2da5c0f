"""Contact sheets: layout, capping, and a real sheet of rendered outputs (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from temporalio.testing import ActivityEnvironment

from tests.helpers import assert_manifest_matches_disk
from varia import jobdir, media
from varia.activities import JobActivities
from varia.cleanup import clean_up_job
from varia.clips import make_clip
from varia.config import Settings
from varia.models import CleanupRequest, OutputEntry, Recipe, RenderResult, RenderTask
from varia.recipes import make_recipe, output_name
from varia.sheet import (
    CELL_WIDTH,
    LABEL_LINES,
    LINE_HEIGHT,
    MAX_CELLS,
    MAX_SHEETS,
    PAD,
    SHEET_NAME,
    layout,
    plan_sheets,
)


@settings(deadline=None)  # no timing thresholds in tests (shared CPU)
@given(
    st.lists(st.integers(1, 70), min_size=1, max_size=6),
    st.integers(16, 4000),
    st.integers(16, 4000),
)
def test_layout_places_every_cell_inside_without_overlap(
    sections: list[int], width: int, height: int
) -> None:
    plan = layout(sections, width, height)
    assert plan.thumb_height <= max(2, height)  # a frame is never blown up
    assert len(plan.cells) == sum(sections)
    assert len(set(plan.cells)) == len(plan.cells)
    cell_height = plan.thumb_height + LABEL_LINES * LINE_HEIGHT + 2 * PAD
    for x, y in plan.cells:
        assert x >= 0 and x + CELL_WIDTH <= plan.width
        assert y >= 0 and y + cell_height <= plan.height


def entry(input_index: int, variation: int) -> OutputEntry:
    return OutputEntry(
        input=f"/in/{input_index}.mp4",
        input_index=input_index,
        variation=variation,
        path=f"s{input_index}_v{variation:03d}.mp4",
        bytes=1,
        duration_s=1.0,
        recipe=Recipe(),
    )


@settings(deadline=None)  # no timing thresholds in tests (shared CPU)
@given(st.lists(st.integers(0, 120), min_size=1, max_size=25))
def test_sheets_are_capped_and_account_for_every_output(per_input: list[int]) -> None:
    outputs = [entry(i, v) for i, n in enumerate(per_input) for v in range(n)]
    stems = [f"s{i}" for i in range(len(per_input))]
    plans = plan_sheets(outputs, stems)
    with_outputs = [i for i, n in enumerate(per_input) if n]
    if not with_outputs:
        assert plans == []
        return
    assert len(plans) <= MAX_SHEETS
    for plan in plans:
        assert len(plan.outputs) + len(plan.inputs) <= MAX_CELLS
    if len(plans) == 1 and plans[0].name == SHEET_NAME:
        assert plans[0].outputs == outputs and plans[0].omitted == 0
    else:
        assert [p.inputs for p in plans] == [[i] for i in with_outputs[:MAX_SHEETS]]
        for plan in plans:
            assert len(plan.outputs) + plan.omitted == per_input[plan.inputs[0]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("sheet")
    return [
        make_clip(root / "wide.mp4", seconds=1, size="320x180"),
        make_clip(root / "tall.mp4", seconds=1, size="180x320", audio=False),
    ]


async def test_a_job_gets_a_labelled_cell_per_kept_output(
    inputs: list[Path], tmp_path: Path
) -> None:
    job_dir = jobdir.open_job_dir(tmp_path, "job-1")
    stems, variations = ["wide", "tall"], 2
    activities = JobActivities(Settings())
    results: list[RenderResult] = []
    for input_index, variation in [(0, 0), (0, 1), (1, 1)]:  # (1, 0) was not kept
        task = RenderTask(
            job_dir=str(job_dir),
            input_index=input_index,
            variation=variation,
            media=media.probe(str(inputs[input_index])),
            recipe=make_recipe(5, input_index, variation),
            output_name=output_name(stems[input_index], variation, variations),
        )
        results.append(await ActivityEnvironment().run(activities.render, task))
    request = CleanupRequest(
        job_id="job-1",
        job_dir=str(job_dir),
        state="cancelled",
        inputs=[str(p) for p in inputs],
        stems=stems,
        variations=variations,
        seed=5,
        results=results,
        failed=0,
    )
    result = clean_up_job(request)

    manifest = assert_manifest_matches_disk(job_dir)
    assert not [p for p in job_dir.iterdir() if p.name.startswith(".varia-cell-")]  # drawn, gone
    assert manifest["removed"] == []
    assert result.sheet == str(job_dir / SHEET_NAME) and result.sheets == [result.sheet]
    [sheet] = manifest["sheets"]
    assert sheet["cells"] == 2 + 3 and sheet["omitted"] == 0
    assert sheet["outputs"] == ["wide_v000.mp4", "wide_v001.mp4", "tall_v001.mp4"]
    plan = layout([3, 2], 320, 180)  # sections: source + outputs, per input
    with Image.open(job_dir / SHEET_NAME) as image:
        assert image.format == "PNG" and image.size == (plan.width, plan.height)
        pixels = image.convert("L")
        for x, y in plan.cells:  # every cell has a picture and a label of text
            label_top = y + plan.thumb_height + PAD
            label = pixels.crop((x, label_top, x + CELL_WIDTH, label_top + LINE_HEIGHT))
            assert label.getextrema()[1] > 150, (x, y)
            picture = pixels.crop((x, y, x + CELL_WIDTH, y + plan.thumb_height))
            assert picture.getextrema()[1] > 100, (x, y)
    assert result.quality is not None and result.quality.measured == 3
    assert manifest["quality"]["measured"] == 3
    wide = [o["quality"] for o in manifest["outputs"] if o["input_index"] == 0]
    assert {q["nearest_sibling"] for q in wide} == {"wide_v000.mp4", "wide_v001.mp4"}
    tall = [o["quality"] for o in manifest["outputs"] if o["input_index"] == 1]
    assert tall[0]["nearest_sibling"] is None  # no sibling kept
