"""Contact sheets: one PNG with each input's source frame and every kept output's frame at the
same relative position (`varia.sampling.SHEET_POSITION`), each cell labelled with the output's
name, its recipe in one line (wrapped) and its measured difference.

A job whose cells fit `MAX_CELLS` gets one `contact-sheet.png`; a bigger job gets one
`contact-sheet-<stem>.png` per input (the first `MAX_SHEETS` inputs with outputs), each showing
at most `MAX_CELLS - 1` outputs (the rest are counted as omitted). Pillow draws it with its
built-in font, so no font is downloaded. Blocking: the finish activity runs it in a thread.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from varia import names
from varia.frames import FrameError, frames_at, png_bytes, scaled_rgb, thumbnail, upright
from varia.glyphs import LabelFont
from varia.jobdir import write_new
from varia.models import OutputEntry, SheetEntry
from varia.recipes import recipe_summary
from varia.sampling import SHEET_POSITION

if TYPE_CHECKING:
    import av
    from PIL import Image, ImageDraw

log = logging.getLogger("varia.sheet")

SHEET_NAME = "contact-sheet.png"
MAX_CELLS = 64
"""Cells on one sheet at most (a source cell per input shown plus one per output)."""
MAX_SHEETS = 16
"""Sheets of a job at most (per-input sheets for the first inputs with outputs)."""
COLUMNS = 4
CELL_WIDTH = 256
MAX_THUMB_HEIGHT = 256
LINE_HEIGHT = 14
LABEL_LINES = 4
PAD = 6
GAP = 8
FONT_SIZE = 11


CELL_PREFIX = names.CELL_PREFIX
"""A kept output's sheet frame, saved by its render (it decoded that frame to measure it) so
cleanup draws the sheet without decoding every output again; deleted once the sheet is drawn."""


def cell_name(output_name: str) -> str:
    """The name of an output's saved sheet frame."""
    return f"{CELL_PREFIX}{output_name}.png"


def may_show(input_index: int, variation: int) -> bool:
    """Whether an output can appear on a sheet (the caps of `plan_sheets`)."""
    return input_index < MAX_CELLS and variation < MAX_CELLS - 1


def save_cell(frame: av.VideoFrame, path: Path) -> None:
    """Save the frame, upright, scaled to fit a cell (PNG, fast compression)."""
    frame = upright(frame)
    scale = min(CELL_WIDTH / frame.width, MAX_THUMB_HEIGHT / frame.height, 1.0)
    width, height = max(2, int(frame.width * scale)), max(2, int(frame.height * scale))
    write_new(path, png_bytes(scaled_rgb(frame, width, height)))


@dataclass(frozen=True)
class Layout:
    """Where each cell of a sheet goes: sections (one per input) start on a new row."""

    width: int
    height: int
    thumb_height: int
    cells: tuple[tuple[int, int], ...]
    """Top-left corner of every cell, in drawing order (source, then its outputs, per input)."""


def layout(section_sizes: Sequence[int], frame_width: int, frame_height: int) -> Layout:
    """The layout of a sheet whose sections hold these many cells each (pure). A frame
    narrower than a cell is shown at its own size, never blown up: a 64x64 clip's 64-cell
    sheet drew and encoded 2.4 times the pixels, all of them interpolated."""
    columns = max(1, min(COLUMNS, max(section_sizes, default=1)))
    shown_width = min(CELL_WIDTH, max(1, frame_width))
    thumb = max(2, min(MAX_THUMB_HEIGHT, round(shown_width * frame_height / max(1, frame_width))))
    cell_height = thumb + LABEL_LINES * LINE_HEIGHT + 2 * PAD
    cells: list[tuple[int, int]] = []
    row = 0
    for size in section_sizes:
        for index in range(size):
            r, c = divmod(index, columns)
            cells.append((GAP + c * (CELL_WIDTH + GAP), GAP + (row + r) * (cell_height + GAP)))
        row += math.ceil(size / columns)
    width = GAP + columns * (CELL_WIDTH + GAP)
    height = GAP + row * (cell_height + GAP)
    return Layout(width=width, height=height, thumb_height=thumb, cells=tuple(cells))


def planned_names(stems: Sequence[str]) -> set[str]:
    """Every sheet name a job with these output stems may write (for cleanup's ownership)."""
    return {SHEET_NAME} | {f"contact-sheet-{stem}.png" for stem in stems}


@dataclass(frozen=True)
class _Plan:
    name: str
    inputs: list[int]
    outputs: list[OutputEntry]
    omitted: int


def plan_sheets(outputs: Sequence[OutputEntry], stems: Sequence[str]) -> list[_Plan]:
    """Which sheets to draw and what each shows (pure)."""
    by_input: dict[int, list[OutputEntry]] = {}
    for entry in sorted(outputs, key=lambda e: (e.input_index, e.variation)):
        by_input.setdefault(entry.input_index, []).append(entry)
    if not by_input:
        return []
    if sum(len(group) + 1 for group in by_input.values()) <= MAX_CELLS:
        shown = [entry for group in by_input.values() for entry in group]
        return [_Plan(SHEET_NAME, sorted(by_input), shown, 0)]
    plans = []
    for index in sorted(by_input)[:MAX_SHEETS]:
        group = by_input[index]
        keep = group[: MAX_CELLS - 1]
        name = f"contact-sheet-{stems[index]}.png"
        plans.append(_Plan(name, [index], keep, len(group) - len(keep)))
    return plans


def write_sheets(
    job_dir: Path,
    inputs: Sequence[str],
    stems: Sequence[str],
    outputs: Sequence[OutputEntry],
    taken: Collection[str] = (),
) -> tuple[list[SheetEntry], list[str]]:
    """Draw and write the job's sheets; returns their entries and any problems (not raised:
    a sheet that cannot be drawn must not fail the job's cleanup). A sheet whose name is
    `taken` by an entry the job did not make (a symlink, a directory) is not drawn."""
    from varia.jobdir import write_file_atomic

    entries, problems = [], []
    for plan in plan_sheets(outputs, stems):
        if plan.name in taken:
            problems.append(
                f"contact sheet {plan.name}: the name is taken by an entry the job "
                "did not make (left alone); not drawn"
            )
            continue
        try:
            data, cells = render_sheet(job_dir, inputs, plan.inputs, plan.outputs)
            write_file_atomic(job_dir, plan.name, data)
        except OSError as err:
            problems.append(f"contact sheet {plan.name}: {err}")
            log.warning("contact sheet %s: %s", plan.name, err)
            continue
        entries.append(
            SheetEntry(
                path=plan.name,
                inputs=plan.inputs,
                cells=cells,
                outputs=[entry.path for entry in plan.outputs],
                omitted=plan.omitted,
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return entries, problems


def render_sheet(
    job_dir: Path,
    inputs: Sequence[str],
    shown_inputs: Sequence[int],
    outputs: Sequence[OutputEntry],
) -> tuple[bytes, int]:
    """The PNG bytes of one sheet and its number of cells."""
    from PIL import Image, ImageDraw

    sources = {index: _source_frame(inputs[index]) for index in shown_inputs}
    first = next((frame for frame in sources.values() if frame is not None), None)
    size = (first.width, first.height) if first is not None else (16, 9)
    sections = [1 + sum(1 for e in outputs if e.input_index == i) for i in shown_inputs]
    plan = layout(sections, *size)
    sheet = Image.new("RGB", (plan.width, plan.height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = label_font()
    corners = iter(plan.cells)
    for index in shown_inputs:
        source = sources[index]
        label = _source_label(inputs[index], source)
        _cell(sheet, draw, font, next(corners), plan.thumb_height, source, label)
        for entry in (e for e in outputs if e.input_index == index):
            frame = _output_picture(job_dir, entry)
            _cell(sheet, draw, font, next(corners), plan.thumb_height, frame, _output_label(entry))
    import av

    return png_bytes(av.VideoFrame.from_image(sheet)), len(plan.cells)  # type: ignore[no-untyped-call]


def _source_frame(path: str) -> av.VideoFrame | None:
    try:
        return upright(frames_at(path, fractions=[SHEET_POSITION], source=True)[0])
    except FrameError as err:
        log.warning("contact sheet: source %s: %s", path, err)
        return None


def _output_picture(job_dir: Path, entry: OutputEntry) -> av.VideoFrame | Image.Image | None:
    """The output's sheet frame: the one its render saved, else decoded from the output."""
    from PIL import Image, UnidentifiedImageError

    saved = job_dir / cell_name(entry.path)
    if saved.is_file() and not saved.is_symlink():
        try:
            with Image.open(saved) as picture:
                return picture.convert("RGB")
        except (OSError, UnidentifiedImageError):
            pass  # cut short or damaged: decode the output instead
    try:
        return upright(frames_at(str(job_dir / entry.path), [SHEET_POSITION * entry.duration_s])[0])
    except FrameError as err:
        log.warning("contact sheet: output %s: %s", entry.path, err)
        return None


def preload_font() -> None:
    """Load the labels' font now (a worker does as it starts: `varia.quality.preload`)."""
    label_font()


@functools.cache
def label_font() -> LabelFont:
    """The labels' font, its glyphs rendered once per process (`varia.glyphs`)."""
    from PIL import ImageFont

    try:
        return LabelFont(ImageFont.load_default(size=FONT_SIZE))
    except (ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return LabelFont(ImageFont.load_default())


def _cell(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    font: LabelFont,
    corner: tuple[int, int],
    thumb_height: int,
    frame: av.VideoFrame | Image.Image | None,
    lines: list[str],
) -> None:
    from PIL import Image

    x, y = corner
    if isinstance(frame, Image.Image):
        sheet.paste(_letterbox(frame, CELL_WIDTH, thumb_height), (x, y))
    elif frame is not None:
        sheet.paste(thumbnail(frame, CELL_WIDTH, thumb_height), (x, y))
    else:
        draw.rectangle((x, y, x + CELL_WIDTH - 1, y + thumb_height - 1), fill=(0, 0, 0))
        font.draw(draw, (x + PAD, y + PAD), "(no frame)", (200, 80, 80))
    for number, line in enumerate(lines[:LABEL_LINES]):
        top = y + thumb_height + PAD + number * LINE_HEIGHT
        font.draw(draw, (x + 2, top), font.clip(line, CELL_WIDTH - 4), (230, 230, 230))


def _letterbox(picture: Image.Image, width: int, height: int) -> Image.Image:
    from PIL import Image

    scale = min(width / picture.width, height / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.BOX)
    if size == (width, height):
        return picture
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(picture, ((width - size[0]) // 2, (height - size[1]) // 2))
    return canvas


def _source_label(path: str, frame: av.VideoFrame | None) -> list[str]:
    size = f"{frame.width}x{frame.height}" if frame is not None else "unreadable"
    return [f"source · {PurePosixPath(path).name}", size, f"frame at {SHEET_POSITION:.0%}", ""]


def _output_label(entry: OutputEntry) -> list[str]:
    recipe = recipe_summary(entry.recipe).split(", ")
    half = (len(recipe) + 1) // 2
    first, second = ", ".join(recipe[:half]), ", ".join(recipe[half:])
    q = entry.quality
    if q is None:
        figures = "not measured"
    else:
        figures = f"SSIM {q.ssim:.3f} · PSNR {q.psnr_db:.1f} dB · pHash {q.phash_distance:g}"
        if q.sibling_distance is not None:
            figures += f" · sib {q.sibling_distance:g}"
    name = entry.path
    if q is not None and q.near_duplicate and q.nearest_sibling:
        name += f"  ≈ {q.nearest_sibling} (near duplicate)"
    return [name, first, second, figures]
