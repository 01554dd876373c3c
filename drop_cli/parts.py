"""Body-part presets: the K parts of a label map, in channel order (0 is background).

- ``eight`` [base]: BPBreID's ``eight`` grouping (its default for occluded sets).
- ``five`` [base]: BPBreID's ``five`` (left and right merged).
- ``five_v`` [base]: BPBreID's ``five_v`` (its Market-1501 and DukeMTMC recipes), five vertical bands
  of keypoint groups; the torso is split between ``upper_arms_torso`` and ``lower_arms_torso``. It is
  made from BPBreID's keypoint fields only (the ``bpbreid`` labeler): it is not a merge of ``eight``.

The left/right mirror of a preset (what a horizontal flip does to its labels) follows from the part
names: ``left_x`` and ``right_x`` swap, every other part stays.

The embedding rows: the model, the features file and the evaluation all order a set of embeddings as
global, foreground, then the K parts (``GLOBAL``, ``FOREGROUND``, ``FIRST_PART``, ``row_names``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import DropError, lookup

# Order of the embedding rows: the two holistic embeddings, then the K parts.
GLOBAL, FOREGROUND, FIRST_PART = 0, 1, 2

PRESETS: dict[str, tuple[str, ...]] = {
    "eight": ("head", "left_arm", "right_arm", "torso", "left_leg", "right_leg", "left_foot", "right_foot"),
    "five": ("head", "arms", "torso", "legs", "feet"),
    "five_v": ("head", "upper_arms_torso", "lower_arms_torso", "legs", "feet"),
}

# Label value in `eight` -> label value in `five` (index 0 is background).
EIGHT_TO_FIVE = np.array([0, 1, 2, 2, 3, 4, 4, 5, 5], dtype=np.uint8)
# The presets a label map in `eight` converts to exactly.
_FROM_EIGHT = {"eight": np.arange(9, dtype=np.uint8), "five": EIGHT_TO_FIVE}


def row_names(parts: Sequence[str]) -> tuple[str, ...]:
    """The names of the embedding rows, in order, for a model with these parts."""
    return ("global", "foreground", *parts)


def part_names(preset: str) -> tuple[str, ...]:
    """The part names of ``preset``; a DropError naming the presets when it is unknown."""
    return lookup(PRESETS, preset, "preset")


def mirror_permutation(parts: tuple[str, ...] | list[str]) -> np.ndarray:
    """[K + 1] label permutation of a horizontal flip: ``left_x`` <-> ``right_x``, the rest fixed.

    Index 0 (background) maps to itself; entry ``k`` is the label that part ``k`` becomes.
    """
    index = {name: k for k, name in enumerate(parts, start=1)}
    out = np.arange(len(parts) + 1, dtype=np.int64)
    for name, k in index.items():
        for side, other in (("left_", "right_"), ("right_", "left_")):
            if name.startswith(side) and other + name[len(side) :] in index:
                out[k] = index[other + name[len(side) :]]
    return out


def from_eight(labels: np.ndarray, preset: str) -> np.ndarray:
    """Convert a label map in the `eight` preset to ``preset`` (exact: `five` merges left and right)."""
    part_names(preset)
    if preset not in _FROM_EIGHT:
        raise DropError(
            f"preset {preset} cannot be made from eight-part labels: it groups BPBreID's keypoint fields differently.",
            hint="Use the bpbreid labeler for it, or preset eight or five.",
        )
    return _FROM_EIGHT[preset][labels]
