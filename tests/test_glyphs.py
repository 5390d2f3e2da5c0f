"""Labels drawn from cached glyphs look as Pillow draws them, and measure the same."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont

from varia.glyphs import LabelFont
from varia.sheet import label_font

LABEL_CHARS = st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"])


def _both(font: LabelFont, text: str) -> tuple[np.ndarray, np.ndarray]:
    by_pillow, by_cache = (Image.new("RGB", (900, 24), (24, 24, 24)) for _ in range(2))
    ImageDraw.Draw(by_pillow).text((3, 4), text, fill=(230, 230, 230), font=font.font)
    font.draw(ImageDraw.Draw(by_cache), (3, 4), text, (230, 230, 230))
    return np.asarray(by_pillow, dtype=int), np.asarray(by_cache, dtype=int)


@settings(max_examples=150, deadline=None)
@given(st.text(LABEL_CHARS, min_size=1, max_size=48))
def test_a_label_looks_and_measures_as_pillow_draws_it(text: str) -> None:
    font = label_font()
    pillow, cached = _both(font, text)
    assert np.abs(pillow - cached).max() <= 2  # rounding of a glyph's coverage, at most
    assert font.length(text) == pytest.approx(font.font.getlength(text), abs=0.01)


def _clip_by_pillow(font: LabelFont, text: str, width: float) -> str:
    """The sheet's clip as it was: drop the last character until the rest fits."""
    if font.font.getlength(text) <= width:
        return text
    while text and font.font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


@settings(max_examples=150, deadline=None)
@given(st.text(LABEL_CHARS, max_size=80), st.integers(0, 300))
def test_a_clipped_label_is_pillows_clip_and_fits(text: str, width: int) -> None:
    font = label_font()
    clipped = font.clip(text, width)
    assert clipped == _clip_by_pillow(font, text, width)
    assert clipped == text or clipped.endswith("…")
    assert font.length(clipped) <= width or clipped == "…"


@pytest.mark.parametrize(
    "text",
    ["مرحبا بالعالم", "שלום", "e\u0301te\u0301", "naïve café ≈ Å"],
    ids=["arabic", "hebrew", "combining-marks", "precomposed"],
)
def test_text_that_needs_shaping_is_left_to_pillow(text: str) -> None:
    font = label_font()
    shaped = any(ord(c) > 0x590 and ord(c) < 0x900 for c in text) or "\u0301" in text
    assert font.cached(text) is not shaped
    pillow, cached = _both(font, text)
    assert np.abs(pillow - cached).max() <= 2


class _KerningFont(ImageFont.FreeTypeFont):
    """The labels' font, but its pairs measure narrower than their letters apart."""

    def getlength(
        self,
        text: str | bytes,
        mode: str = "",
        direction: str | None = None,
        features: list[str] | None = None,
        language: str | None = None,
    ) -> float:
        return 7.0 * len(text) - (1.5 if len(text) > 1 else 0.0)


def test_a_kerning_font_is_left_to_pillow_whole() -> None:
    plain = label_font().font
    assert isinstance(plain, ImageFont.FreeTypeFont)
    font = LabelFont(_KerningFont(io.BytesIO(plain.font_bytes), plain.size))
    assert not font.per_glyph and not font.cached("AV")


def test_the_bitmap_font_without_freetype_is_left_to_pillow() -> None:
    font = LabelFont(ImageFont.load_default_imagefont())
    text = "variation 3 - seed 12"
    assert not font.cached(text)
    pillow, cached = _both(font, text)
    assert np.array_equal(pillow, cached)
    assert font.length(text) == font.font.getlength(text)


def test_a_label_on_a_palette_picture_is_drawn_as_pillow_draws_it() -> None:
    """The cached glyphs' fast path draws RGB inks; a palette picture is left to Pillow."""
    font = label_font()
    by_pillow, by_cache = (Image.new("P", (200, 24)) for _ in range(2))
    ImageDraw.Draw(by_pillow).text((3, 4), "out_v0001.mp4", fill=(230, 230, 230), font=font.font)
    font.draw(ImageDraw.Draw(by_cache), (3, 4), "out_v0001.mp4", (230, 230, 230))
    assert np.array_equal(np.asarray(by_pillow), np.asarray(by_cache))
