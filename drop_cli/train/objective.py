"""The training objective: BPBreID's GiLt loss with DROP's losses added on top, from the recipe's ``loss:``.

[base] GiLt as BPBreID trains it (``GiLtLoss`` + ``BodyPartAttentionLoss``, the weights of
``configs/bpbreid/*_train.yaml``):

- identity cross-entropy, label smoothing 0.1, on the BNNeck'd global, foreground and
  concatenated-parts embeddings (``id_weight`` each, 1);
- the part-averaged batch-hard triplet (margin 0.3) on the pre-BNNeck part embeddings
  (``triplet_weight``, 1), without visibility masking (``triplet_visibility``: false);
- a batch-hard triplet on the pre-BNNeck foreground embedding (``foreground_triplet_weight``: 1 on
  Market-1501, DukeMTMC and Occluded-REID, 0 elsewhere);
- the pixel-wise part classification cross-entropy, label smoothing 0.1 (``parsing_weight``: 0.35,
  0.7 on Occluded-REID).

[paper] DROP adds to the ReID branch the Part-aware Compactness Triplet with the Parts Embedding
Memory Bank, the memory adding negatives (``pct``, ``memory``), and smooths the parsing loss
spatially (``parsing_smoothing``); the forms of both are [ours] (losses/pct.py, losses/parsing.py).
With ``parts`` false only the global embedding is trained (identity + batch-hard triplet): the
global-feature baseline that part-based methods are measured against.

Distributed training: the terms that compare images with each other (the triplets and PCT) are
computed on the whole global batch, gathered from every rank with this rank's share keeping its
gradient (``BATCH_TERMS``); the per-image means (identity, parsing) on the rank's own share. See
``train.step`` for how the two are weighted so that the gradient is the one-process gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..losses import (
    PartsMemoryBank,
    batch_hard_triplet_loss,
    identity_loss,
    memory_ready,
    parsing_loss,
    part_averaged_triplet_loss,
    pct_loss,
)
from ..model.output import DropOutput
from ..parts import FOREGROUND, GLOBAL
from ..recipe import LossConfig

# The terms computed on the global batch (all ranks' shares): each compares images with each other.
BATCH_TERMS = frozenset({"global_triplet", "part_triplet", "foreground_triplet", "pct_triplet", "pct_compact"})

Gather = Callable[[torch.Tensor], torch.Tensor]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The gather of a one-process run: the batch is the global batch."""
    return tensor


class Objective:
    """The loss terms a ``loss:`` section switches on, with their weights.

    Args:
        config: the recipe's loss section (its fields are documented in drop_cli.recipe.LossConfig).
    """

    def __init__(self, config: LossConfig):
        self.config = config

    def memory_bank(self, num_images: int, num_parts: int, dim: int) -> PartsMemoryBank | None:
        c = self.config
        wanted = c.parts and c.pct and c.memory
        return PartsMemoryBank(num_images, num_parts, dim, c.memory_momentum, c.pct_normalize) if wanted else None

    def use_memory(self, bank: PartsMemoryBank | None, epoch: int) -> bool:
        return bank is not None and memory_ready(bank, epoch, self.config.memory_start_epoch)

    def __call__(
        self,
        out: DropOutput,
        labels: torch.Tensor,
        pids: torch.Tensor,
        indices: torch.Tensor,
        bank: PartsMemoryBank | None = None,
        use_memory: bool = False,
        gather: Gather = _local,
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms, keyed by name (their sum is the loss to minimise).

        Args:
            out: the model's output for this rank's images.
            labels: [N, H, W] label maps; pids, indices: [N] identities and training-set indices.
            bank: the parts memory bank (None without PCT's memory); use_memory: the memory regime.
            gather: all ranks' shares of a tensor concatenated, this rank's with its gradient
                (the identity in a one-process run).
        """
        c = self.config
        all_pids = gather(pids)
        if not c.parts:
            return {
                "id_global": c.id_weight
                * identity_loss({"global": out.id_logits["global"]}, pids, c.label_smoothing)["global"],
                "global_triplet": c.triplet_weight
                * batch_hard_triplet_loss(gather(out.embeddings[:, GLOBAL]), all_pids, c.triplet_margin),
            }
        terms = {f"id_{k}": c.id_weight * v for k, v in identity_loss(out.id_logits, pids, c.label_smoothing).items()}
        parts, visibility = gather(out.parts), gather(out.visibility)
        if c.triplet_weight:
            terms["part_triplet"] = c.triplet_weight * part_averaged_triplet_loss(
                parts, visibility if c.triplet_visibility else None, all_pids, c.triplet_margin
            )
        if c.foreground_triplet_weight:
            terms["foreground_triplet"] = c.foreground_triplet_weight * batch_hard_triplet_loss(
                gather(out.embeddings[:, FOREGROUND]), all_pids, c.triplet_margin
            )
        if c.pct:
            pct = pct_loss(
                parts,
                visibility,
                all_pids,
                gather(indices),
                bank,
                c.pct_margin,
                c.compact_weight,
                use_memory,
                c.pct_normalize,
                c.memory_positives,
            )
            terms["pct_triplet"] = c.pct_weight * pct["pct_triplet"]
            terms["pct_compact"] = pct["pct_compact"]
        terms["parsing"] = c.parsing_weight * parsing_loss(
            out.parsing_logits, labels.long(), c.parsing_smoothing, c.parsing_label_smoothing, c.parsing_target_resize
        )
        return terms
