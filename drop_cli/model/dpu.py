"""Detail-Preserving Upsampling (DPU): the decoupled parsing stream's own feature map.

DROP (Dou et al., arXiv 2401.18032) [paper]: the parsing head does not read the ReID map F; DPU
"fuses feature maps of different resolutions by channel reduction into a high-resolution,
low-channel map". The paper gives no layer-level detail, so the layers are [ours], in the spirit of
an FPN decoder:

1. per scale, a 1x1 conv + BN + ReLU reduces the backbone map to ``channels`` (64) channels;
2. top-down fusion: from the coarsest scale down, the fused coarser map is bilinearly upsampled,
   added to the finer reduced map and refined by a 3x3 conv + BN + ReLU;
3. every fused scale is upsampled to the finest (stride-4) size and concatenated;
4. a 3x3 conv + BN + ReLU gives X_p ``[N, out_channels (128), H/4, W/4]``.

``Projection`` is the ``dpu=False`` ablation of a decoupled model [ours]: X_p is a 1x1 conv + BN + ReLU
of F to the same 128 channels, a task-specific map without multi-scale fusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBnAct", "DetailPreservingUpsampling", "Projection", "resize"]


class ConvBnAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + ReLU, "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def resize(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize; a no-op when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class DetailPreservingUpsampling(nn.Module):
    """Multi-scale backbone maps -> one high-resolution, low-channel parsing map X_p.

    Args:
        in_channels: width of each backbone map, finest first (``Backbone.channels``).
        channels: width of every scale after reduction and fusion (64).
        out_channels: width of X_p (128).
    """

    def __init__(self, in_channels: tuple[int, ...] | list[int], *, channels: int = 64, out_channels: int = 128):
        super().__init__()
        self.out_channels = out_channels
        self.lateral = nn.ModuleList(ConvBnAct(c, channels, 1) for c in in_channels)
        # One refinement per scale that receives a coarser map: all but the coarsest.
        self.refine = nn.ModuleList(ConvBnAct(channels, channels, 3) for _ in list(in_channels)[:-1])
        self.fuse = ConvBnAct(channels * len(in_channels), out_channels, 3)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Fuse the backbone maps.

        Args:
            features: backbone maps ``[N, in_channels[i], H_i, W_i]``, finest (stride 4) first.

        Returns:
            X_p [N, out_channels, H_0, W_0].
        """
        lateral = [layer(f) for layer, f in zip(self.lateral, features)]
        fused = [lateral[-1]]
        for i in range(len(lateral) - 2, -1, -1):
            coarser = resize(fused[0], lateral[i].shape[-2:])
            fused.insert(0, self.refine[i](lateral[i] + coarser))
        size = fused[0].shape[-2:]
        return self.fuse(torch.cat([resize(f, size) for f in fused], dim=1))


class Projection(ConvBnAct):
    """The ``dpu=False`` parsing map: a 1x1 conv + BN + ReLU of F [N, C, h, w] to [N, out_channels, h, w].

    Args:
        in_channels: width of F.
        out_channels: width of X_p (128).
    """

    def __init__(self, in_channels: int, *, out_channels: int = 128):
        super().__init__(in_channels, out_channels, 1)
        self.out_channels = out_channels
