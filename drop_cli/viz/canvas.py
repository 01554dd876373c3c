"""A picture composed as one numpy array: tiles, frames and marks in numpy, text in one Pillow pass.

Drawing hundreds of image tiles this way takes milliseconds, where one matplotlib axes per tile
takes seconds. Text uses DejaVu Sans (shipped with matplotlib) and is queued, then rendered when the
picture is saved, so the pixel work stays vectorised. The layout constants shared by the pictures
live here (each picture's own are in its module), so its size follows from its documented formula.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import palette
from .output import save_png
from .palette import RGB

MARGIN = 12  # around the whole picture
TITLE_H = 26  # title line (bold, TITLE_SIZE)
SUBTITLE_H = 18  # each subtitle line (TEXT_SIZE)
LEGEND_H = 20  # each line of the colour legend
LEGEND_SLOT = 112  # width of one legend entry
HEADER_GAP = 8  # between the header and the grid
CAPTION_H = 14  # each caption line under a tile (CAPTION_SIZE)
MARKS_H = 12  # the row of per-part marks under a tile
TITLE_SIZE, TEXT_SIZE, CAPTION_SIZE = 16, 12, 11


@functools.lru_cache(maxsize=8)
def _font(size: int, bold: bool):
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def fit_text(text: str, width: int, size: int = CAPTION_SIZE, bold: bool = False, middle: bool = False) -> str:
    """``text`` shortened with an ellipsis (at the end, or in the ``middle``) to at most ``width`` pixels wide."""
    font = _font(size, bold)
    if font.getlength(text) <= width:
        return text
    for cut in range(1, len(text) + 1):
        keep = len(text) - cut
        short = text[: keep - keep // 2] + "…" + text[len(text) - keep // 2 :] if middle else text[:keep] + "…"
        if font.getlength(short) <= width:
            return short
    return "…"


def header_height(lines: int, legend_entries: int, width: int) -> int:
    """Height of `Canvas.header` with ``lines`` subtitle lines and a legend of ``legend_entries`` in ``width`` px."""
    return MARGIN + TITLE_H + lines * SUBTITLE_H + legend_lines(legend_entries, width) * LEGEND_H + HEADER_GAP


def legend_lines(entries: int, width: int) -> int:
    """Lines a legend of ``entries`` takes in a picture ``width`` px wide (fixed-width slots)."""
    per_line = max(1, (width - 2 * MARGIN) // LEGEND_SLOT)
    return -(-entries // per_line)


@dataclass
class Canvas:
    """An RGB picture [height, width, 3] uint8 on white; text is queued and drawn by `save`."""

    height: int
    width: int
    pixels: np.ndarray = field(init=False)
    _texts: list = field(init=False, default_factory=list)

    def __post_init__(self):
        self.pixels = np.full((self.height, self.width, 3), palette.PAPER, np.uint8)

    def paste(self, tile: np.ndarray, top: int, left: int) -> None:
        """Copy an RGB ``tile`` [h, w, 3] with its top-left corner at (top, left)."""
        h, w = tile.shape[:2]
        self.pixels[top : top + h, left : left + w] = tile

    def fill(self, top: int, left: int, height: int, width: int, colour: RGB) -> None:
        self.pixels[top : top + height, left : left + width] = colour

    def frame(self, top: int, left: int, height: int, width: int, colour: RGB, thickness: int) -> None:
        """A rectangle outline of ``thickness`` px whose outer edge is the given box."""
        t = thickness
        self.fill(top, left, t, width, colour)
        self.fill(top + height - t, left, t, width, colour)
        self.fill(top, left, height, t, colour)
        self.fill(top, left + width - t, height, t, colour)

    def text(
        self,
        x: int,
        y: int,
        text: str,
        size: int = CAPTION_SIZE,
        colour: RGB = palette.TEXT,
        bold: bool = False,
        max_width: int | None = None,
        anchor: str = "la",
        middle: bool = False,
    ) -> None:
        """Queue ``text`` at (x, y) (Pillow ``anchor``, default left and ascender line), shortened to ``max_width`` px
        (`fit_text`; ``middle`` keeps both ends, e.g. of a file name)."""
        if max_width is not None:
            text = fit_text(text, max_width, size, bold, middle)
        self._texts.append((x, y, text, size, colour, bold, anchor))

    def marks(self, top: int, left: int, width: int, shown: np.ndarray, colours: np.ndarray) -> None:
        """One small square per part across ``width`` px: filled with the part colour where ``shown``, else an outline.

        Args:
            shown: [K] bool.
            colours: [K, 3] uint8 part colours (without the background row).
        """
        k = len(shown)
        side = int(np.clip((width - (k - 1) * 2) // max(k, 1), 3, MARKS_H - 2))
        start = left + (width - (k * side + (k - 1) * 2)) // 2
        for i in range(k):
            colour = tuple(int(c) for c in colours[i])
            x = start + i * (side + 2)
            if shown[i]:
                self.fill(top + 1, x, side, side, colour)
            else:
                self.frame(top + 1, x, side, side, colour, 1)

    def header(self, title: str, subtitle: Sequence[str] = (), legend: Sequence[tuple[str, RGB]] = ()) -> int:
        """Title, subtitle lines and a colour legend at the top; returns the y where the content starts."""
        inner = self.width - 2 * MARGIN
        y = MARGIN
        self.text(MARGIN, y, title, TITLE_SIZE, bold=True, max_width=inner)
        y += TITLE_H
        for line in subtitle:
            self.text(MARGIN, y, line, TEXT_SIZE, palette.MUTED, max_width=inner)
            y += SUBTITLE_H
        per_line = max(1, inner // LEGEND_SLOT)
        for i, (name, colour) in enumerate(legend):
            x = MARGIN + (i % per_line) * LEGEND_SLOT
            row_y = y + (i // per_line) * LEGEND_H
            self.fill(row_y + 3, x, 13, 13, colour)
            self.text(x + 18, row_y + 2, name, TEXT_SIZE, max_width=LEGEND_SLOT - 22)
        return y + legend_lines(len(legend), self.width) * LEGEND_H + HEADER_GAP if legend else y + HEADER_GAP

    def render(self) -> np.ndarray:
        """The finished picture [height, width, 3] uint8 RGB, text included."""
        if not self._texts:
            return self.pixels
        from PIL import Image, ImageDraw

        image = Image.fromarray(self.pixels)
        draw = ImageDraw.Draw(image)
        for x, y, text, size, colour, bold, anchor in self._texts:
            draw.text((x, y), text, fill=colour, font=_font(size, bold), anchor=anchor)
        return np.asarray(image)

    def save(self, path: str | Path) -> Path:
        """Write the picture as a PNG, under a temporary name first, then renamed."""
        return save_png(self.render(), path)
