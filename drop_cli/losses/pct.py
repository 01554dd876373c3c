"""Part-aware Compactness Triplet (PCT) loss and the Parts Embedding Memory Bank.

[paper: DROP, arXiv 2401.18032] PCT, added to the ReID branch, enhances instance-level part
differences; a memory bank of part embeddings adds negatives once it has been filled (the
memory-based regime). Nothing finer is published. [ours] The concrete form implemented here:

- The bank keeps one embedding per (training image, part), written only when the part is visible:
  the first write stores it, later writes blend ``m * old + (1 - m) * new`` with momentum m = 0.5
  (L2-normalised before and after the blend when PCT normalises).
- For each part k separately, on L2-normalised embeddings (``normalize``), a batch-hard triplet
  (margin 0.3) whose candidates are the other batch images and, in the memory regime, the filled
  memory slots of other identities as negatives. Invisible anchor parts contribute nothing; invisible
  or unfilled candidates are skipped. With ``memory_positives`` the memory slots of the anchor's
  identity (its own image excluded) are hard-positive candidates too.
- A compactness term: the squared distance from each visible part embedding to its identity's part
  centre, the mean of the identity's visible embeddings of that part over the batch (the anchor
  included) and, with ``memory_positives`` in the memory regime, its filled memory slots (the
  anchor's own slot excluded). The centre is detached: it is a target, and on the batch alone this
  gives the same gradient as not detaching it.

Memory slots are never differentiated through. Under DDP every rank updates its bank with the whole
global batch (the all-gathered part embeddings), so the banks stay identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .triplet import batch_hard, masked_mean, pairwise_euclidean


class PartsMemoryBank(torch.nn.Module):
    """One L2-normalised embedding per (training image, part), stored as buffers.

    Buffers (saved in ``state_dict`` for resuming, moved by ``.to(device)``):
        memory: [num_images, K, D] float32 part embeddings (zeros where never written).
        filled: [num_images, K] bool, the part of that image has been written at least once.
        pids: [num_images] int64 identity of the image, -1 until the image is first seen.

    Args:
        num_images: size of the training set (``indices`` passed to ``update`` index it).
        num_parts: K.
        dim: embedding size D.
        momentum: weight of the old memory in the blend.
        normalize: store L2-normalised embeddings (and normalise the blends); False: raw embeddings.
    """

    memory: torch.Tensor  # [num_images, K, D]
    filled: torch.Tensor  # [num_images, K] bool: the slot has been written
    pids: torch.Tensor  # [num_images] identity of each slot's image, -1 before its first write

    def __init__(self, num_images: int, num_parts: int, dim: int, momentum: float = 0.5, normalize: bool = True):
        super().__init__()
        self.momentum, self.normalize = momentum, normalize
        self.register_buffer("memory", torch.zeros(num_images, num_parts, dim))
        self.register_buffer("filled", torch.zeros(num_images, num_parts, dtype=torch.bool))
        self.register_buffer("pids", torch.full((num_images,), -1, dtype=torch.long))

    @property
    def fill_ratio(self) -> float:
        """Fraction of the training images seen by ``update`` at least once (synchronises the device)."""
        return (self.pids >= 0).float().mean().item()

    @torch.no_grad()
    def update(self, indices: torch.Tensor, parts: torch.Tensor, visibility: torch.Tensor, pids: torch.Tensor) -> None:
        """Write a batch into the memory; parts invisible in an image keep their old slot.

        Args:
            indices: [B] int64 training-set indices of the images.
            parts: [B, K, D] part embeddings (detached, and normalised here with ``normalize``).
            visibility: [B, K] bool.
            pids: [B] identity labels.

        An index repeated in the batch is written once, by one of its rows (which one is unspecified).
        ``memory`` is replaced rather than modified in place, so calling this before ``backward`` on a
        loss that read the bank is safe.
        """
        norm = (lambda x: F.normalize(x, dim=-1)) if self.normalize else (lambda x: x)
        new = norm(parts.detach().to(self.memory.dtype))
        old = self.memory[indices]
        seen = self.filled[indices]
        blended = norm(self.momentum * old + (1 - self.momentum) * new)
        written = torch.where(seen[..., None], blended, new)
        slots = torch.where(visibility[..., None], written, old)
        self.memory = self.memory.index_put((indices,), slots)
        self.filled[indices] = seen | visibility
        self.pids[indices] = pids


def memory_ready(bank: PartsMemoryBank, epoch: int, start_epoch: int, min_fill: float = 0.9) -> bool:
    """The rule for entering the memory-based regime: warm-up is over and the bank has been filled.

    Update the bank on every iteration from the start of training, and pass ``use_memory`` =
    ``memory_ready(...)`` (evaluated once per epoch) to ``pct_loss``.
    """
    return epoch >= start_epoch and bank.fill_ratio >= min_fill


def pct_loss(
    parts: torch.Tensor,
    visibility: torch.Tensor,
    pids: torch.Tensor,
    indices: torch.Tensor,
    bank: PartsMemoryBank | None = None,
    margin: float = 0.3,
    compact_weight: float = 0.5,
    use_memory: bool = True,
    normalize: bool = True,
    memory_positives: bool = False,
) -> dict[str, torch.Tensor]:
    """Part-aware Compactness Triplet loss, with the memory bank when ``use_memory`` and ``bank`` are set.

    Compute it before ``bank.update`` with the same batch, so the memory holds earlier embeddings.

    Args:
        parts: [B, K, D] part embeddings (before the BNNeck).
        visibility: [B, K] bool.
        pids: [B] identity labels.
        indices: [B] int64 training-set indices (to skip each anchor's own memory slot).
        bank: the memory bank, on the same device as ``parts``; None means batch only.
        margin: triplet margin (on L2-normalised embeddings distances lie in [0, 2]).
        compact_weight: factor already applied to ``pct_compact``.
        use_memory: read the bank (the memory-based regime); False means batch only.
        normalize: compare L2-normalised embeddings (the bank must store them the same way).
        memory_positives: memory slots of the anchor's identity are positives and centre members
            too; False: the memory only adds negatives [paper].

    Returns:
        ``{"pct_triplet": scalar, "pct_compact": scalar}``, to be summed. The triplet term averages
        over (anchor, part) pairs that are visible and have a positive and a negative; the compact
        term over visible (anchor, part) pairs whose identity has another embedding of that part.
    """
    z = (F.normalize(parts.float(), dim=-1) if normalize else parts.float()).transpose(0, 1)  # [K, B, D]
    vis = visibility.transpose(0, 1)  # [K, B]
    same = pids[:, None] == pids[None, :]
    not_self = ~torch.eye(len(pids), dtype=torch.bool, device=parts.device)
    usable = vis[:, None, :]  # [K, 1, B] candidate part is visible
    dist = pairwise_euclidean(z, z)  # [K, B, B]
    positive = same & not_self & usable
    negative = ~same & usable
    members = same & usable  # same identity, the anchor included: averaged into the centre
    centre_sum = members.float() @ z.detach()
    centre_count = members.sum(-1)

    if use_memory and bank is not None:
        memory = bank.memory.transpose(0, 1)  # [K, M, D]
        own_slot = indices[:, None] == torch.arange(len(bank.pids), device=indices.device)
        mem_usable = bank.filled.transpose(0, 1)[:, None, :] & ~own_slot  # [K, B, M]
        mem_same = pids[:, None] == bank.pids[None, :]  # [B, M]
        mem_members = mem_same & mem_usable if memory_positives else torch.zeros_like(mem_usable)
        dist = torch.cat([dist, pairwise_euclidean(z, memory)], -1)
        positive = torch.cat([positive, mem_members], -1)
        negative = torch.cat([negative, ~mem_same & mem_usable], -1)
        if memory_positives:
            centre_sum = centre_sum + mem_members.float() @ memory
            centre_count = centre_count + mem_members.sum(-1)

    hinge, valid = batch_hard(dist, positive, negative, margin)
    centre = centre_sum / centre_count.clamp(min=1)[..., None]
    spread = (z - centre).pow(2).sum(-1)  # [K, B]
    return {
        "pct_triplet": masked_mean(hinge, valid & vis),
        "pct_compact": compact_weight * masked_mean(spread, positive.any(-1) & vis),
    }
