"""What every labeler returns, and the per-image quality flags stored in the labels file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Bits of the labels file's `flags` dataset.
FLAG_UNREADABLE = 1  # the image file could not be decoded (corrupt or truncated)
FLAG_NO_PERSON = 2  # the labeler found no person (low presence score): labels stay background
FLAG_MISSING_SOURCE = 4  # the labeler's input for this image (e.g. a BPBreID mask) is missing
FLAG_NAMES = {FLAG_UNREADABLE: "unreadable", FLAG_NO_PERSON: "no_person", FLAG_MISSING_SOURCE: "missing_source"}


@dataclass(frozen=True)
class LabelResult:
    """One image's labels: ``mask`` (H, W) uint8, 0 background and 1..K the preset's parts;
    ``quality`` in [0, 1] (person presence; 1 for labelers without a score); ``flags`` as above."""

    mask: np.ndarray
    quality: float = 1.0
    flags: int = 0
