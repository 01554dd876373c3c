"""The `synthetic` labeler: the ground truth that `drop make-synthetic` drew with every image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ...parts import from_eight
from ..base import LabelResult
from ..file import LabelFile


class SyntheticLabeler:
    """Reads ``ground_truth.h5`` (preset `eight`, image resolution), converts the preset and resizes
    with nearest-neighbour sampling to the label size."""

    name = "synthetic"
    version = "1"

    def __init__(self, preset: str, height: int, width: int, ground_truth: str | Path):
        self.preset, self.height, self.width = preset, height, width
        self.truth = LabelFile(ground_truth)

    def label(self, image: np.ndarray, relpath: str) -> LabelResult:
        truth = self.truth[relpath]
        if truth.shape != (self.height, self.width):
            truth = cv2.resize(truth, (self.width, self.height), interpolation=cv2.INTER_NEAREST)
        return LabelResult(from_eight(truth, self.preset))
