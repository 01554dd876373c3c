"""Image tiles: read the images of a picture once each, fit them into cells at their native aspect ratio.

A missing or unreadable image becomes a grey placeholder with a cross and one warning for the
whole picture; when most images are missing, the folder is not the one the paths belong to, and
that is a `DropError` rather than a picture of placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .. import _ui
from ..errors import DropError

PAD = (235, 235, 235)  # letterbox around an image whose aspect ratio differs from the cell's
_PLACEHOLDER, _CROSS = (205, 205, 205), (150, 150, 150)


def read_images(folder: str | Path, relpaths: Sequence[str], what: str = "images") -> dict[str, np.ndarray | None]:
    """Each distinct image of ``relpaths`` below ``folder`` as RGB [h, w, 3] uint8, None when missing or unreadable.

    Warns once, naming a few, when some are missing.

    Raises:
        DropError: more than half of them are missing (``folder`` is not the dataset folder of the paths).
    """
    folder = Path(folder)
    images: dict[str, np.ndarray | None] = {}
    for rel in dict.fromkeys(relpaths):
        images[rel] = _read_rgb(folder / rel)
    missing = [rel for rel, image in images.items() if image is None]
    if missing and 2 * len(missing) > len(images):
        raise DropError(
            f"{len(missing)} of {len(images)} {what} are missing under {folder}, e.g. {missing[0]}.",
            hint="Pass the dataset folder that the paths are relative to (the one the labels or "
            "features file was made from).",
        )
    if missing:
        _ui.warn(
            f"{len(missing)} of {len(images)} {what} missing or unreadable under {folder} (drawn as grey "
            f"placeholders): {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}"
        )
    return images


def _read_rgb(path: Path) -> np.ndarray | None:
    """The image at ``path`` as RGB [h, w, 3] uint8, or None (quietly) when it is missing or cannot be decoded."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fit_box(src_height: int, src_width: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a src_height x src_width picture scaled to fit, centred, in a height x width cell."""
    scale = min(height / src_height, width / src_width)
    h = max(1, min(height, round(src_height * scale)))
    w = max(1, min(width, round(src_width * scale)))
    return (height - h) // 2, (width - w) // 2, h, w


def fit(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``image`` [h, w, 3] scaled into a height x width tile at its aspect ratio, letterboxed with `PAD`.

    Returns:
        The tile [height, width, 3] uint8 and the image's box (top, left, h, w) inside it.
    """
    box = top, left, h, w = fit_box(image.shape[0], image.shape[1], height, width)
    shrink = h < image.shape[0]
    scaled = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if (h, w) == (height, width):
        return np.ascontiguousarray(scaled), box
    tile = np.empty((height, width, 3), np.uint8)
    tile[:] = PAD
    tile[top : top + h, left : left + w] = scaled
    return tile, box


def placeholder(height: int, width: int) -> np.ndarray:
    """A grey [height, width, 3] uint8 tile with a cross: the image is missing."""
    tile = np.empty((height, width, 3), np.uint8)
    tile[:] = _PLACEHOLDER
    thickness = max(1, min(height, width) // 40)
    cv2.line(tile, (0, 0), (width - 1, height - 1), _CROSS, thickness, cv2.LINE_AA)
    cv2.line(tile, (width - 1, 0), (0, height - 1), _CROSS, thickness, cv2.LINE_AA)
    return tile


def tile_for(image: np.ndarray | None, height: int, width: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """`fit` for an image, `placeholder` (whose box is the whole tile) for None."""
    if image is None:
        return placeholder(height, width), (0, 0, height, width)
    return fit(image, height, width)
