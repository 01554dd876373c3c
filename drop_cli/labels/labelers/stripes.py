"""The `stripes` labeler: K horizontal bands over the whole crop, a model-free prior as in PCB."""

from __future__ import annotations

import numpy as np

from ...parts import part_names
from ..base import LabelResult


class StripesLabeler:
    """Band k (1..K, top to bottom) covers rows ``[k-1, k) * H / K``; the image content is not used."""

    name = "stripes"
    version = "1"

    def __init__(self, preset: str, height: int, width: int):
        k = len(part_names(preset))
        bands = (np.arange(height) * k // height + 1).astype(np.uint8)
        self._mask = np.repeat(bands[:, None], width, axis=1)

    def label(self, image: np.ndarray, relpath: str) -> LabelResult:
        return LabelResult(self._mask.copy())
