"""Training losses: functions of tensors, plus the one stateful piece, the parts memory bank."""

from __future__ import annotations

from .identity import identity_loss
from .parsing import parsing_loss
from .pct import PartsMemoryBank, memory_ready, pct_loss
from .triplet import batch_hard_triplet_loss, part_averaged_triplet_loss

__all__ = [
    "PartsMemoryBank",
    "batch_hard_triplet_loss",
    "identity_loss",
    "memory_ready",
    "parsing_loss",
    "part_averaged_triplet_loss",
    "pct_loss",
]
