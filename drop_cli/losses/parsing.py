"""Spatially smoothed parsing loss [paper: DROP, arXiv 2401.18032] with label smoothing [base].

[base] BPBreID's body part attention loss is a label-smoothed (0.1) cross-entropy of the pixel-wise
part logits against the pseudo-label map, averaged over all pixels; the map is brought to the logits'
resolution by nearest sampling (its ``ResizeMasks``, torch's legacy "nearest": each output cell takes
the input pixel at its top-left corner).

[ours] DROP's smoothing: the one-hot target of each pixel is averaged over its ``smoothing x
smoothing`` neighbourhood (replicate padding, so border pixels still sum to one), then mixed with the
uniform distribution. With ``smoothing=1`` this is BPBreID's loss exactly. Inside a region of one
label the target is unchanged; only pixels within ``smoothing // 2`` of a part boundary get a mixed
target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_parsing_target(
    target: torch.Tensor, num_classes: int, smoothing: int = 3, label_smoothing: float = 0.1
) -> torch.Tensor:
    """The soft target of ``parsing_loss``.

    Args:
        target: [N, h, w] int64 labels in ``0..num_classes-1`` (0 = background).
        num_classes: K + 1.
        smoothing: side of the average filter; 1 disables spatial smoothing.
        label_smoothing: weight of the uniform distribution.

    Returns:
        [N, num_classes, h, w] float32, summing to 1 over the channels at every pixel.
    """
    soft = F.one_hot(target, num_classes).permute(0, 3, 1, 2).float()
    if smoothing > 1:
        before, after = (smoothing - 1) // 2, smoothing // 2
        soft = F.pad(soft, (before, after, before, after), mode="replicate")
        soft = F.avg_pool2d(soft, smoothing, stride=1)
    return (1 - label_smoothing) * soft + label_smoothing / num_classes


# How the label map is brought to the logits' size (recipe key loss.parsing_target_resize).
TARGET_RESIZES = ("nearest", "nearest-exact")


def parsing_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    smoothing: int = 3,
    label_smoothing: float = 0.1,
    resize: str = "nearest",
) -> torch.Tensor:
    """Cross-entropy of the parsing logits against the smoothed pseudo-label map, in float32.

    Args:
        logits: [N, K+1, h, w] parsing logits, channel 0 = background.
        target: [N, H, W] int64 labels in ``0..K``; resized to (h, w) when the sizes differ.
        smoothing: side of the spatial average filter applied to the one-hot target (1 = off).
        label_smoothing: weight of the uniform distribution mixed into the target.
        resize: "nearest" [base]: each output cell takes the label at its top-left input pixel;
            "nearest-exact" [ours]: the label nearest its centre.

    Returns:
        Scalar loss averaged over all pixels.
    """
    if resize not in TARGET_RESIZES:
        raise ValueError(f"resize must be one of {TARGET_RESIZES}, not {resize!r}")
    size = logits.shape[-2:]
    if target.shape[-2:] != size:
        target = F.interpolate(target[:, None].float(), size=size, mode=resize)[:, 0].long()
    soft = smoothed_parsing_target(target, logits.shape[1], smoothing, label_smoothing)
    return -(soft * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
