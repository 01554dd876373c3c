"""Batch-hard triplet losses [base]: on one embedding (BoT) and part-averaged (BPBreID).

Every anchor takes its hardest positive (farthest sample of its identity) and hardest negative
(closest sample of another identity) and pays ``relu(d_ap - d_an + margin)``. Anchors left with no
positive or no negative are excluded from the mean; a batch without any valid anchor gives a zero
loss that stays connected to the graph.
"""

from __future__ import annotations

import torch


def pairwise_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``a`` [..., A, D] and ``b`` [..., C, D] -> [..., A, C].

    Computed in float32 as ``sqrt(max(|a|^2 + |b|^2 - 2 a.b, 1e-12))``: no [A, C, D] intermediate, and
    a finite (zero) gradient where two rows coincide.
    """
    a, b = a.float(), b.float()
    sq = a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2)
    return sq.clamp(min=1e-12).sqrt()


def batch_hard(
    dist: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hardest-positive / hardest-negative hinge per anchor.

    Args:
        dist: [..., A, C] distances from A anchors to C candidates.
        positive: [..., A, C] bool, candidate is a usable positive of the anchor.
        negative: [..., A, C] bool, candidate is a usable negative of the anchor.
        margin: triplet margin.

    Returns:
        ``(hinge [..., A], valid [..., A] bool)``: the hinge is zero where the anchor has no
        positive or no negative (``valid`` is False there).
    """
    hardest_pos = torch.where(positive, dist, torch.zeros_like(dist)).amax(-1)
    hardest_neg = torch.where(negative, dist, torch.full_like(dist, torch.finfo(dist.dtype).max)).amin(-1)
    valid = positive.any(-1) & negative.any(-1)
    hinge = torch.relu(hardest_pos - hardest_neg + margin)
    return torch.where(valid, hinge, torch.zeros_like(hinge)), valid


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``valid`` (same shape); 0 (with a graph) when nothing is valid."""
    return (values * valid).sum() / valid.sum().clamp(min=1)


def batch_hard_triplet_loss(emb: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss on one embedding per image (the global-feature baseline).

    Args:
        emb: [N, D] embeddings (not normalised, as in BoT).
        pids: [N] identity labels.
        margin: triplet margin.

    Returns:
        Scalar loss averaged over anchors that have both a positive and a negative in the batch.
    """
    dist = pairwise_euclidean(emb, emb)
    same = pids[:, None] == pids[None, :]
    not_self = ~torch.eye(len(pids), dtype=torch.bool, device=emb.device)
    return masked_mean(*batch_hard(dist, same & not_self, ~same, margin))


def part_averaged_triplet_loss(
    parts: torch.Tensor, visibility: torch.Tensor | None, pids: torch.Tensor, margin: float = 0.3
) -> torch.Tensor:
    """BPBreID's part-averaged batch-hard triplet loss (``PartAveragedTripletLoss``).

    The distance between images i and j is the mean of the K per-part euclidean distances: over
    all parts when ``visibility`` is None, as BPBreID trains (``mask_filtering_training: False``)
    [base]; else over the parts visible in both, and pairs without a shared visible part are left
    out of the mining [ours].

    Args:
        parts: [N, K, D] part embeddings.
        visibility: [N, K] bool, part k is visible in image n; or None.
        pids: [N] identity labels.
        margin: triplet margin.

    Returns:
        Scalar loss averaged over anchors that have both a positive and a negative.
    """
    per_part = pairwise_euclidean(parts.transpose(0, 1), parts.transpose(0, 1))  # [K, N, N]
    if visibility is None:
        dist = per_part.mean(0)
        comparable = torch.ones_like(dist, dtype=torch.bool)
    else:
        vis = visibility.transpose(0, 1).float()
        shared = vis[:, :, None] * vis[:, None, :]  # [K, N, N]
        count = shared.sum(0)
        dist = (per_part * shared).sum(0) / count.clamp(min=1)
        comparable = count > 0
    same = pids[:, None] == pids[None, :]
    not_self = ~torch.eye(len(pids), dtype=torch.bool, device=parts.device)
    positive = same & not_self & comparable
    negative = ~same & comparable
    return masked_mean(*batch_hard(dist, positive, negative, margin))
