"""What `DropNet.forward` returns, in training and evaluation mode alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..parts import FIRST_PART


@dataclass
class DropOutput:
    """Model outputs for a batch of N images with K parts and embedding size D.

    Attributes:
        embeddings: [N, 2 + K, D] before the BNNeck: global, foreground, then parts 1..K.
        bn_embeddings: [N, 2 + K, D] after the BNNeck (the test-time features, L2-normalised later).
        id_logits: identity logits [N, num_classes] keyed "global", "foreground" and "parts"
            (the concatenated part embeddings); empty when the model has no classifier (num_classes=0).
        parsing_logits: [N, K + 1, H/4, W/4] body-part logits, channel 0 = background.
        visibility: [N, K] bool, part k wins the per-pixel argmax of the parsing map somewhere.
    """

    embeddings: torch.Tensor
    bn_embeddings: torch.Tensor
    id_logits: dict[str, torch.Tensor]
    parsing_logits: torch.Tensor
    visibility: torch.Tensor

    @property
    def parts(self) -> torch.Tensor:
        """[N, K, D] part embeddings before the BNNeck."""
        return self.embeddings[:, FIRST_PART:]
