"""The human-parsing head and the visibility rule.

Head [base] (BPBreID's ``PixelToPartClassifier``): BatchNorm2d + 1x1 conv giving K + 1 logits per
pixel, channel 0 = background. In DROP it reads the decoupled parsing map X_p [paper]; in the
BPBreID-equivalent (``decouple=False``) it reads the ReID map F. Its convolution starts from
N(0, 0.001) weights and zero bias [base], so the initial attention is near uniform; ``init="kaiming"``
(He init, near one-hot initial attention) is our earlier choice, kept as an option [ours].

Visibility [base]: part k is visible in an image iff it wins the per-pixel argmax of the K + 1
logits at one pixel at least.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

__all__ = ["PARSING_INITS", "ParsingHead", "part_visibility"]


# Initialisations of the head's convolution (recipe key model.parsing_init).
PARSING_INITS = ("normal", "kaiming")


class ParsingHead(nn.Sequential):
    """BN + 1x1 conv: [N, in_channels, h, w] -> parsing logits S [N, num_parts + 1, h, w].

    Args:
        in_channels: width of the map it reads (128 for X_p, C for F).
        num_parts: K, the number of body parts (background excluded).
        init: the convolution's weights: "normal", N(0, 0.001) [base]; "kaiming", He normal
            (fan_out) [ours]. The bias starts at zero and the BN at identity either way.
    """

    def __init__(self, in_channels: int, *, num_parts: int, init: str = "normal"):
        conv = nn.Conv2d(in_channels, num_parts + 1, 1)
        if init == "normal":
            nn.init.normal_(conv.weight, std=0.001)
        elif init == "kaiming":
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        else:
            raise ValueError(f"init must be one of {PARSING_INITS}, not {init!r}")
        nn.init.zeros_(cast(torch.Tensor, conv.bias))
        super().__init__(nn.BatchNorm2d(in_channels), conv)
        self.num_parts = num_parts


def part_visibility(parsing_logits: torch.Tensor) -> torch.Tensor:
    """Which parts win the per-pixel argmax somewhere.

    Args:
        parsing_logits: [N, K + 1, h, w], channel 0 = background (probabilities work too).

    Returns:
        [N, K] bool: ``visibility[n, k - 1]`` is True iff ``argmax_c S[n, c, y, x] == k`` at some pixel.
    """
    winners = parsing_logits.detach().argmax(dim=1).flatten(1)  # [N, hw]
    parts = torch.arange(1, parsing_logits.shape[1], device=winners.device)
    return (winners[:, None, :] == parts[None, :, None]).any(dim=2)
