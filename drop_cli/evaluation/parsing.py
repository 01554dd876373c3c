"""Parsing quality: mean intersection-over-union of predicted part maps against reference maps."""

from __future__ import annotations

import numpy as np


def resize_nearest(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, H, W] label maps -> [N, height, width] by nearest-neighbour sampling of pixel centres."""
    rows = ((np.arange(height) + 0.5) * maps.shape[1] / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * maps.shape[2] / width).astype(np.int64)
    return maps[:, rows][:, :, cols]


def parsing_iou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class IoU [num_classes] over a set of maps (NaN for a class absent from both).

    Args:
        pred: [N, h, w] integer predicted labels.
        target: [N, H, W] integer reference labels, resized to (h, w) with nearest sampling if needed.
        num_classes: K + 1 (background included).
    """
    if target.shape[1:] != pred.shape[1:]:
        target = resize_nearest(target, *pred.shape[1:])
    joint = np.bincount(
        target.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel(),
        minlength=num_classes * num_classes,
    ).reshape(num_classes, num_classes)
    inter = np.diag(joint).astype(np.float64)
    union = joint.sum(0) + joint.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def parsing_miou(pred: np.ndarray, target: np.ndarray, num_classes: int, include_background: bool = False) -> float:
    """Mean IoU over the parts (and background when asked) present in either map set."""
    iou = parsing_iou(pred, target, num_classes)
    return float(np.nanmean(iou if include_background else iou[1:]))
