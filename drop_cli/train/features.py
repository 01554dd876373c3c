"""Test-time features of a set of images: the embeddings DROP matches with, and its visibility."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model.output import FOREGROUND, GLOBAL


@dataclass
class Features:
    """embeddings [N, M, D] float32 (M = global, foreground, K parts; BNNeck'd and L2-normalised),
    visibility [N, M] float32 (global and foreground always 1), pids [N], camids [N], and optionally
    parsing [N, H/4, W/4] uint8 (the predicted label map)."""

    embeddings: np.ndarray
    visibility: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    parsing: np.ndarray | None = None


@torch.no_grad()
def extract_features(model: torch.nn.Module, loader, device: torch.device, flip_tta: bool = False,
                     autocast_dtype: torch.dtype | None = None, keep_parsing: bool = False,
                     advance: Callable[[int], None] = lambda n: None) -> Features:
    """Run ``model`` (in eval mode) over ``loader`` (items with image, pid, camid)."""
    was_training = model.training
    model.eval()
    embeddings, visibility, pids, camids, parsing = [], [], [], [], []
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(images)
            emb = out.bn_embeddings.float()
            if flip_tta:
                flipped = model(images.flip(-1))
                emb = emb + _swap_flipped_parts(flipped.bn_embeddings.float(), out.visibility.shape[1])
        vis = torch.ones(emb.shape[:2], device=device)
        vis[:, FOREGROUND + 1:] = out.visibility.float()
        embeddings.append(F.normalize(emb, dim=-1).cpu())
        visibility.append(vis.cpu())
        pids.append(batch["pid"])
        camids.append(batch["camid"])
        if keep_parsing:
            parsing.append(out.parsing_logits.argmax(1).to(torch.uint8).cpu())
        advance(len(images))
    model.train(was_training)
    return Features(torch.cat(embeddings).numpy(), torch.cat(visibility).numpy(), torch.cat(pids).numpy(),
                    torch.cat(camids).numpy(), torch.cat(parsing).numpy() if keep_parsing else None)


def _swap_flipped_parts(emb: torch.Tensor, num_parts: int) -> torch.Tensor:
    """Embeddings of a mirrored image, with left/right part rows swapped back (`eight` preset)."""
    if num_parts != 8:
        return emb
    order = [GLOBAL, FOREGROUND] + [2 + p for p in (0, 2, 1, 3, 5, 4, 7, 6)]
    return emb[:, order]
