"""Body-part presets: the K parts of a label map, in channel order (0 is background)."""
from __future__ import annotations

import numpy as np

from .errors import lookup

PRESETS: dict[str, tuple[str, ...]] = {
    "eight": ("head", "left_arm", "right_arm", "torso", "left_leg", "right_leg", "left_foot", "right_foot"),
    "five": ("head", "arms", "torso", "legs", "feet"),
}

# Label value in `eight` -> label value in `five` (index 0 is background).
EIGHT_TO_FIVE = np.array([0, 1, 2, 2, 3, 4, 4, 5, 5], dtype=np.uint8)


def part_names(preset: str) -> tuple[str, ...]:
    """The part names of ``preset``; a DropError naming the presets when it is unknown."""
    return lookup(PRESETS, preset, "preset")


def from_eight(labels: np.ndarray, preset: str) -> np.ndarray:
    """Convert a label map in the `eight` preset to ``preset`` (exact: `five` merges left and right)."""
    part_names(preset)
    return labels if preset == "eight" else EIGHT_TO_FIVE[labels]
