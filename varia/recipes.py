"""Deterministic planning: which recipe and output name each variation gets.

Pure functions of the request (and the probed media), so the workflow may call them and a
replay, a retry or a continue-as-new always plans the very same variations.

The knobs and their ranges (documented in the README):

| knob | range |
|---|---|
| brightness | -0.06 .. +0.06 (FFmpeg `eq`) |
| contrast | 0.92 .. 1.08 |
| saturation | 0.85 .. 1.20 |
| hue_degrees | -10 .. +10 |
| zoom (crop and scale back) | 1.00 .. 1.12, panned anywhere in the frame |
| mirror | a 50 % chance for each variation |
| speed (audio follows with `atempo`) | 0.95 .. 1.05 |
| noise (temporal luma/chroma noise) | 0 .. 8 |
| crf (libx264) | 20 .. 28 |
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePosixPath

from varia.models import Recipe

KNOB_RANGES: dict[str, tuple[float, float]] = {
    "brightness": (-0.06, 0.06),
    "contrast": (0.92, 1.08),
    "saturation": (0.85, 1.20),
    "hue_degrees": (-10.0, 10.0),
    "zoom": (1.0, 1.12),
    "pan_x": (0.0, 1.0),
    "pan_y": (0.0, 1.0),
    "speed": (0.95, 1.05),
}


def default_seed(job_id: str) -> int:
    """The seed of a job that was given none: derived from its workflow id, so different jobs
    differ and each job is reproducible (pass it as `seed` to render the same files again).

    The first 4 bytes of SHA-256 of the id: below 2**32, exact in any JSON reader (JavaScript
    included) and short enough to type.
    """
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big")


def resolve_seed(seed: int | None, job_id: str) -> int:
    """The seed a job runs with: the request's, or `default_seed(job_id)` when it has none."""
    return default_seed(job_id) if seed is None else seed


def _unit(seed: int, input_index: int, variation: int, knob: str) -> float:
    """A number in [0, 1) that depends only on its arguments (stable across Python versions)."""
    digest = hashlib.sha256(f"{seed}:{input_index}:{variation}:{knob}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def make_recipe(seed: int, input_index: int, variation: int) -> Recipe:
    """The recipe of one variation; the same arguments always give the same recipe."""

    def draw(knob: str) -> float:
        low, high = KNOB_RANGES[knob]
        return round(low + (high - low) * _unit(seed, input_index, variation, knob), 4)

    return Recipe(
        brightness=draw("brightness"),
        contrast=draw("contrast"),
        saturation=draw("saturation"),
        hue_degrees=round(draw("hue_degrees"), 2),
        zoom=draw("zoom"),
        pan_x=draw("pan_x"),
        pan_y=draw("pan_y"),
        mirror=_unit(seed, input_index, variation, "mirror") < 0.5,
        speed=draw("speed"),
        noise=int(_unit(seed, input_index, variation, "noise") * 9),
        crf=20 + int(_unit(seed, input_index, variation, "crf") * 9),
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
STEM_MAX = 60
"""The most characters of an input's name an output name keeps."""
CLASH_MARK = "~"
"""Joins a clashing stem to its input's index. It is outside the sanitised alphabet
(`A-Z a-z 0-9 . _ -`), so a disambiguated stem never equals another input's sanitised stem."""


def safe_stem(path: str) -> str:
    """An input's file-name stem in the sanitised alphabet: never empty, never starting with
    `.` or `-`, at most `STEM_MAX` characters (`input` when nothing usable is left)."""
    stem = _UNSAFE.sub("_", PurePosixPath(path).stem).strip("._-")
    return stem[:STEM_MAX] or "input"


def output_stems(inputs: Sequence[str]) -> list[str]:
    """One file-name stem per input, unique even on a case-insensitive file system.

    A stem that no other input shares (compared case-folded) is kept as is; every input of a
    group that shares one becomes `<stem>~<input index>`. Pure and deterministic: the same
    inputs in the same order always give the same stems.
    """
    stems = [safe_stem(path) for path in inputs]
    counts = Counter(stem.casefold() for stem in stems)
    return [
        f"{stem}{CLASH_MARK}{index}" if counts[stem.casefold()] > 1 else stem
        for index, stem in enumerate(stems)
    ]


def output_name(stem: str, variation: int, variations: int) -> str:
    """The final file name of a variation, zero-padded so names sort in order."""
    width = max(3, len(str(variations - 1)))
    return f"{stem}_v{variation:0{width}d}.mp4"


def recipe_summary(recipe: Recipe) -> str:
    """A short human line for a recipe (activity summaries in the Web UI)."""
    parts = [
        f"zoom {recipe.zoom:.2f}",
        f"speed {recipe.speed:.2f}",
        f"bri {recipe.brightness:+.2f}",
        f"con {recipe.contrast:.2f}",
        f"sat {recipe.saturation:.2f}",
        f"hue {recipe.hue_degrees:+.0f}°",
        f"crf {recipe.crf}",
    ]
    if recipe.mirror:
        parts.append("mirror")
    if recipe.noise:
        parts.append(f"noise {recipe.noise}")
    return ", ".join(parts)
