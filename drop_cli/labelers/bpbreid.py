"""The `bpbreid` labeler: imports the part masks that BPBreID's authors published (SPEC section 3).

Each image has a float ``[36, h, w]`` array in [0, 1] (h x w tiny, e.g. 17 x 9): 17 keypoint
confidence fields then 19 limb fields. A part is the maximum over its channels; the fields are
upsampled bilinearly to the label size first, then every pixel takes its best part, or background
where every part is below 0.5.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import DropError
from ..parts import part_names
from .base import FLAG_MISSING_SOURCE, LabelResult

NUM_CHANNELS = 36
THRESHOLD = 0.5
GROUPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "eight": (
        (0, 1, 2, 3, 4, 29, 30, 31, 32, 33, 34, 35),  # head
        (5, 7, 9, 25, 27),  # left arm
        (6, 8, 10, 26, 28),  # right arm
        (11, 12, 21, 22, 23, 24),  # torso
        (13, 17, 18, 21),  # left leg
        (14, 19, 20),  # right leg
        (15,),  # left foot
        (16,),  # right foot
    ),
    "five": (
        (0, 1, 2, 3, 4, 29, 30, 31, 32, 33, 34, 35),  # head
        (5, 6, 7, 8, 9, 10, 25, 26, 27, 28),  # arms
        (11, 12, 21, 22, 23, 24),  # torso
        (11, 12, 13, 14, 17, 18, 19, 20, 21),  # legs
        (15, 16),  # feet
    ),
}


def mask_file(masks_dir: Path, relpath: str, dataset: str) -> Path:
    """Where BPBreID keeps the mask of ``relpath``: ``<masks_dir>/<split folder>/<stem>.npy``
    (Occluded-Duke: ``<name>.confidence_fields.npy``)."""
    rel = Path(relpath)
    name = f"{rel.name}.confidence_fields.npy" if dataset == "occluded_duke" else f"{rel.stem}.npy"
    return masks_dir / rel.parent / name


def fields_to_labels(fields: np.ndarray, preset: str, height: int, width: int) -> np.ndarray:
    """``[36, h, w]`` float fields -> ``(height, width)`` uint8 label map of ``preset``."""
    if fields.ndim != 3 or fields.shape[0] != NUM_CHANNELS:
        raise ValueError(f"expected a [{NUM_CHANNELS}, h, w] array, got shape {fields.shape}")
    parts = np.stack([fields[list(group)].max(axis=0) for group in GROUPS[preset]], axis=-1).astype(np.float32)
    parts = cv2.resize(parts, (width, height), interpolation=cv2.INTER_LINEAR)
    parts = parts.reshape(height, width, -1)
    best = parts.argmax(axis=-1)
    return np.where(parts.max(axis=-1) >= THRESHOLD, best + 1, 0).astype(np.uint8)


class BpbreidLabeler:
    name = "bpbreid"
    version = "1"

    def __init__(self, preset: str, height: int, width: int, masks_dir: str | Path, dataset: str):
        part_names(preset)
        self.preset, self.height, self.width = preset, height, width
        self.masks_dir, self.dataset = Path(masks_dir), dataset

    def label(self, image: np.ndarray, relpath: str) -> LabelResult:
        path = mask_file(self.masks_dir, relpath, self.dataset)
        try:
            fields = np.load(path)
        except FileNotFoundError:
            return LabelResult(np.zeros((self.height, self.width), np.uint8), 0.0, FLAG_MISSING_SOURCE)
        except (ValueError, OSError) as e:
            raise DropError(f"bpbreid mask {path} is not a readable .npy file ({e}).",
                            hint="Re-extract BPBreID's mask archive.") from None
        try:
            return LabelResult(fields_to_labels(fields, self.preset, self.height, self.width))
        except ValueError as e:
            raise DropError(f"bpbreid mask {path}: {e}.", hint="Is --bpbreid-masks the right folder?") from None
