"""Pedestrian Position Encoder (PPE): where on the body a row is, for the parsing stream only.

DROP (Dou et al., arXiv 2401.18032) [paper]: a position embedding of the 1-D height coordinate,
added to the parsing branch only (a pedestrian crop has its head at the top and its feet at the
bottom, whatever the horizontal position). [ours] One learned vector per feature-map row, a parameter
``[1, C, H_ref, 1]`` (truncated-normal init, std 0.02) broadcast over the width and added to X_p;
for another map height it is linearly interpolated along the height (e.g. 256x128 training with
H_ref = 64, then 384x128 inputs giving 96 rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PedestrianPositionEncoder"]


class PedestrianPositionEncoder(nn.Module):
    """Adds a learned per-row embedding to a map.

    Args:
        channels: width of the map it is added to (128 for X_p).
        height: number of rows the embedding is learned for (input height / 4, e.g. 64 for 256x128).
    """

    def __init__(self, channels: int, *, height: int = 64):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, channels, height, 1))
        nn.init.trunc_normal_(self.embedding, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the row embedding, as a new tensor.

        Args:
            x: [N, channels, h, w]; any h (the embedding is interpolated when h != height).

        Returns:
            [N, channels, h, w].
        """
        embedding: torch.Tensor = self.embedding
        if embedding.shape[2] != x.shape[2]:
            embedding = F.interpolate(embedding, size=(x.shape[2], 1), mode="bilinear", align_corners=False)
        return x + embedding.to(x.dtype)
