"""Identity cross-entropy with label smoothing on the holistic embeddings [base: BPBreID, BoT]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_loss(
    logits: dict[str, torch.Tensor], pids: torch.Tensor, label_smoothing: float = 0.1
) -> dict[str, torch.Tensor]:
    """Label-smoothed cross-entropy for each classifier head, computed in float32.

    Args:
        logits: identity logits [N, num_classes] per head, e.g. "global", "foreground", "parts".
        pids: [N] int64 training identity labels in ``0..num_classes-1``.
        label_smoothing: weight of the uniform distribution mixed into the one-hot target.

    Returns:
        One scalar loss per key of ``logits`` (an empty dict when there is no classifier).
    """
    return {name: F.cross_entropy(head.float(), pids, label_smoothing=label_smoothing) for name, head in logits.items()}
