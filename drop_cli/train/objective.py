"""The training objective: which loss terms a recipe switches on, and their weights.

With every DROP switch on: identity CE (global, foreground, concatenated parts) + PCT with the parts
memory bank + the spatially smoothed parsing loss. With ``pct`` off the part term is BPBreID's
part-averaged batch-hard triplet, and with ``parsing_smoothing`` 1 the parsing loss is plain
label-smoothed cross-entropy: together with the model switches off, the BPBreID-equivalent baseline.
With ``parts`` off only the global embedding is trained (identity + batch-hard triplet): the
global-feature baseline that part-based methods are measured against.
"""
from __future__ import annotations

from dataclasses import dataclass

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
from ..model.output import GLOBAL, DropOutput


@dataclass(frozen=True)
class Objective:
    """Loss weights and switches, as plain values (built from the recipe's ``loss`` section)."""

    parts: bool = True
    id_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    triplet_margin: float = 0.3
    pct: bool = True
    compact_weight: float = 0.5
    memory: bool = True
    memory_momentum: float = 0.5
    memory_start_epoch: int = 10
    parsing_weight: float = 0.35
    parsing_smoothing: int = 3
    parsing_label_smoothing: float = 0.1

    def memory_bank(self, num_images: int, num_parts: int, dim: int) -> PartsMemoryBank | None:
        wanted = self.parts and self.pct and self.memory
        return PartsMemoryBank(num_images, num_parts, dim, self.memory_momentum) if wanted else None

    def use_memory(self, bank: PartsMemoryBank | None, epoch: int) -> bool:
        return bank is not None and memory_ready(bank, epoch, self.memory_start_epoch)

    def __call__(self, out: DropOutput, labels: torch.Tensor, pids: torch.Tensor, indices: torch.Tensor,
                 bank: PartsMemoryBank | None, use_memory: bool) -> dict[str, torch.Tensor]:
        """Weighted loss terms, keyed by name (their sum is the loss to minimise)."""
        if not self.parts:
            global_logits = {"global": out.id_logits["global"]}
            return {"id_global": self.id_weight * identity_loss(global_logits, pids, self.label_smoothing)["global"],
                    "global_triplet": self.triplet_weight * batch_hard_triplet_loss(
                        out.embeddings[:, GLOBAL], pids, self.triplet_margin)}
        terms = {f"id_{k}": self.id_weight * v
                 for k, v in identity_loss(out.id_logits, pids, self.label_smoothing).items()}
        if self.pct:
            pct = pct_loss(out.parts, out.visibility, pids, indices, bank, self.triplet_margin, self.compact_weight,
                           use_memory)
            terms.update({k: self.triplet_weight * v for k, v in pct.items()})
        else:
            terms["part_triplet"] = self.triplet_weight * part_averaged_triplet_loss(
                out.parts, out.visibility, pids, self.triplet_margin)
        terms["parsing"] = self.parsing_weight * parsing_loss(out.parsing_logits, labels.long(),
                                                              self.parsing_smoothing, self.parsing_label_smoothing)
        return terms
