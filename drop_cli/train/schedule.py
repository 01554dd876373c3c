"""Learning-rate schedule as a function of the epoch: linear warm-up, then steps down."""

from __future__ import annotations


def lr_at(epoch: int, base_lr: float, warmup_epochs: int, milestones: list[int], gamma: float) -> float:
    """BPBreID's schedule: linear warm-up from base_lr / 100 over ``warmup_epochs``, then x gamma at
    each milestone. A pure function, so a resumed run needs no scheduler state."""
    if epoch < warmup_epochs:
        start = base_lr * 0.01
        return start + (base_lr - start) * epoch / warmup_epochs
    return base_lr * gamma ** sum(epoch >= m for m in milestones)
