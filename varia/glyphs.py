"""Label text drawn from glyphs rendered once: the contact sheet's labels are many short lines
in one small font, and Pillow rasterises every glyph of every line afresh (3.3 ms for a cell's
four lines, 0.5 ms from cached glyphs: most of a small job's sheet). Most of what is left was
`ImageDraw.bitmap`'s own Python per glyph (the ink looked up, the mask loaded): a line looks its
ink up once and draws its cached glyphs through Pillow's drawing core directly.

Each character is drawn alone and advanced by its own width, so text that needs shaping
(combining marks, right-to-left scripts) is left to Pillow, as is every line when the font
kerns pairs or is Pillow's bitmap font (`LabelFont` checks the font once).
"""

from __future__ import annotations

import functools
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont

_NEEDS_SHAPING = frozenset({"R", "AL", "AN", "RLE", "RLO", "RLI", "FSI", "LRE", "LRO", "PDF"})
_KERNING_PROBE = "AVAWTaToYaLTFa."


@dataclass(frozen=True)
class _Glyph:
    core: Any  # the glyph's loaded mask's drawing core (`mask.im`), as `ImageDraw.bitmap` passes it
    left: int
    top: int
    advance: float


class LabelFont:
    """A font whose glyphs are rendered once; `length` and `draw` as Pillow's, faster."""

    def __init__(self, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> None:
        self.font = font
        self._glyphs: dict[str, _Glyph] = {}
        self._lock = threading.Lock()
        self.per_glyph = _outline(font) and not _kerns(font)
        """Whether this font's lines can be drawn glyph by glyph at all."""

    def cached(self, text: str) -> bool:
        """Whether `text` is drawn from cached glyphs (no kerning, no shaping needed)."""
        return self.per_glyph and all(_simple(c) for c in text)

    def length(self, text: str) -> float:
        """The advance width of `text` in pixels, as `ImageDraw.textlength` gives it."""
        if not self.cached(text):
            return float(self.font.getlength(text))
        return sum(self._glyph(c).advance for c in text)

    def draw(
        self,
        pen: ImageDraw.ImageDraw,
        xy: tuple[int, int],
        text: str,
        fill: tuple[int, int, int],
    ) -> None:
        """Draw `text` with its top-left at `xy`, as `pen.text(xy, text, ...)` would."""
        if not self.cached(text) or pen.palette is not None:  # (a palette maps the ink first)
            pen.text(xy, text, fill=fill, font=self.font)
            return
        x, y = float(xy[0]), xy[1]
        core: Any = pen.draw  # Pillow's drawing core, which `pen.bitmap` calls per glyph
        ink = core.draw_ink(fill)  # what `pen.bitmap` would look up per glyph
        for char in text:
            glyph = self._glyph(char)
            core.draw_bitmap((round(x) + glyph.left, y + glyph.top), glyph.core, ink)
            x += glyph.advance

    def clip(self, text: str, width: float, ellipsis: str = "…") -> str:
        """`text` if it fits in `width` pixels, else its longest start that fits with
        `ellipsis` after it (and the ellipsis alone if none does)."""
        if self.length(text) <= width:
            return text
        if not self.cached(text + ellipsis):
            while text and self.length(text + ellipsis) > width:
                text = text[:-1]
            return text + ellipsis
        room = width - self.length(ellipsis)
        used, end = 0.0, 0
        for char in text:
            used += self._glyph(char).advance
            if used > room:
                break
            end += 1
        return text[:end] + ellipsis

    def _glyph(self, char: str) -> _Glyph:
        glyph = self._glyphs.get(char)
        if glyph is None:
            with self._lock:  # each glyph rendered once, with two cleanups at once too
                glyph = self._glyphs.get(char) or self._render(char)
                self._glyphs[char] = glyph
        return glyph

    def _render(self, char: str) -> _Glyph:
        from PIL import Image, ImageDraw

        left, top, right, bottom = (int(v) for v in self.font.getbbox(char))
        mask = Image.new("L", (max(1, right - left), max(1, bottom - top)))
        ImageDraw.Draw(mask).text((-left, -top), char, fill=255, font=self.font)
        mask.load()
        return _Glyph(mask.im, left, top, float(self.font.getlength(char)))


def _outline(font: object) -> bool:
    """Whether `font` is a FreeType font (Pillow's bitmap font places glyphs otherwise)."""
    from PIL import ImageFont

    return isinstance(font, ImageFont.FreeTypeFont)


def _kerns(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> bool:
    """Whether the font narrows some pairs of letters (then a line is not its glyphs' sum)."""
    probe = _KERNING_PROBE
    return abs(font.getlength(probe) - sum(font.getlength(c) for c in probe)) > 0.01


@functools.cache
def _simple(char: str) -> bool:
    """A character drawn alone looks as in a line: no mark, no right-to-left, printable."""
    return (
        char.isprintable()
        and not unicodedata.category(char).startswith("M")
        and unicodedata.bidirectional(char) not in _NEEDS_SHAPING
    )
