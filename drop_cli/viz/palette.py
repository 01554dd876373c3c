"""Fixed colours: one per body-part name (the same in every picture and preset), and the frame colours.

A part keeps its colour across presets where the names agree (``head`` and ``torso`` in `eight` and
`five`), and a merged part takes the colour of its left half (``arms`` is ``left_arm``'s orange).
Names outside the presets get colours from a spare list, by position, so a custom part set still
gets distinct, stable colours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RGB = tuple[int, int, int]

PART_COLOURS: dict[str, RGB] = {
    "head": (255, 200, 0),
    "left_arm": (255, 120, 20),
    "right_arm": (215, 60, 220),
    "torso": (30, 110, 255),
    "left_leg": (0, 200, 170),
    "right_leg": (140, 210, 30),
    "left_foot": (150, 85, 40),
    "right_foot": (255, 110, 175),
    "arms": (255, 120, 20),
    "legs": (0, 200, 170),
    "feet": (150, 85, 40),
}
_SPARE: tuple[RGB, ...] = (
    (0, 170, 255),
    (190, 190, 0),
    (120, 80, 200),
    (255, 80, 80),
    (0, 130, 90),
    (200, 140, 255),
    (120, 120, 120),
    (255, 170, 120),
)

BACKGROUND: RGB = (0, 0, 0)
SAME_ID: RGB = (30, 170, 60)
OTHER_ID: RGB = (220, 35, 35)
QUERY: RGB = (45, 45, 45)
RESULT: RGB = (70, 110, 160)  # a search result: a neutral frame, since no identity is known
FLAGGED: RGB = (220, 35, 35)
NEUTRAL: RGB = (150, 150, 150)
TEXT: RGB = (20, 20, 20)
MUTED: RGB = (100, 100, 100)
PAPER: RGB = (255, 255, 255)


def part_colours(parts: Sequence[str]) -> np.ndarray:
    """Colour table of a label map: [K + 1, 3] uint8 RGB, row 0 background, row k the colour of ``parts[k - 1]``."""
    spare = iter(_SPARE * (1 + len(parts) // len(_SPARE)))
    rows = [BACKGROUND] + [PART_COLOURS[name] if name in PART_COLOURS else next(spare) for name in parts]
    return np.array(rows, dtype=np.uint8)
