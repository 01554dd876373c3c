"""A drop model as the appearance model of a BoxMOT tracker (BoT-SORT, StrongSORT, DeepOCSORT, ...).

    from boxmot import StrongSort
    from drop_cli.tracking import BoxmotReid

    tracker = StrongSort(reid_model=BoxmotReid("runs/x/last.pt"))   # or "model.onnx"
    tracks = tracker.update(detections, frame)                       # detections: x1, y1, x2, y2, conf, cls

BoxMOT asks its ``reid_model`` for ``get_features(boxes, image)``: boxes [N, 4] x1 y1 x2 y2 in pixels,
the frame as BGR uint8, one vector per box back, which it compares by cosine distance. The vector is
`Embeddings.single_vector` (default ``parts``: the foreground and part rows concatenated; chosen by
measurement: on the synthetic set it ranks as well as the part distance, and better than scaling
the parts by their visibility, see the README). The crops go through
`ReidModel.embed`, resized as `drop extract-features` resizes.

BoxMOT itself is not needed to build or run this object; the ``[track]`` extra installs it
(AGPL-3.0, unlike drop).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DropError
from .inference.model import SINGLE_VECTORS, ReidModel

DEFAULT_VECTOR = "parts"


class BoxmotReid:
    """BoxMOT's ``reid_model``: ``get_features(boxes, image) -> [N, D]`` from a drop model.

    Args:
        model: a checkpoint, an ONNX export, or a loaded `ReidModel`.
        device: ``auto``, ``cpu`` or ``cuda`` (for a path).
        vector: the `Embeddings.single_vector` form.
        batch_size: crops per forward pass.
    """

    def __init__(
        self,
        model: str | Path | ReidModel,
        *,
        device: str = "auto",
        vector: str = DEFAULT_VECTOR,
        batch_size: int = 32,
    ):
        self.model = model if isinstance(model, ReidModel) else ReidModel.load(model, device=device)
        self.vector, self.batch_size = vector, batch_size
        self.device = self.model.device
        if vector not in SINGLE_VECTORS:
            raise DropError(f"unknown single-vector form {vector!r}.", hint=f"Use one of {', '.join(SINGLE_VECTORS)}.")
        rows = 1 if vector in ("foreground", "global") else 1 + len(self.model.spec.parts)
        self.embedding_dim = rows * self.model.spec.embed_dim  # BoxMOT reads the width from here

    def crops(self, boxes: np.ndarray, image: np.ndarray) -> list[np.ndarray]:
        """The BGR crops of ``boxes`` (x1, y1, x2, y2; clipped to the image, at least one pixel)."""
        height, width = image.shape[:2]
        out = []
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            left, top = int(np.clip(np.floor(x1), 0, width - 1)), int(np.clip(np.floor(y1), 0, height - 1))
            right, bottom = int(np.clip(np.ceil(x2), left + 1, width)), int(np.clip(np.ceil(y2), top + 1, height))
            out.append(np.ascontiguousarray(image[top:bottom, left:right]))
        return out

    def get_features(self, boxes: np.ndarray, image: np.ndarray) -> np.ndarray:
        """[N, D] float32 L2-normalised vectors of the N boxes of ``image`` (BGR uint8 [H, W, 3])."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DropError(f"the frame must be a BGR uint8 [H, W, 3] array, got {image.shape} {image.dtype}.")
        crops = self.crops(boxes, image)
        if not crops:
            return np.zeros((0, self.embedding_dim), np.float32)
        return self.model.embed(crops, batch_size=self.batch_size).single_vector(self.vector)
