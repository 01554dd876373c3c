"""Test-time features of a set of images: the embeddings DROP matches with, and its visibility.

[base] BPBreID's test embeddings (``test_embeddings: ['bn_foreg', 'parts']``) are the BNNeck'd
foreground and the pre-BNNeck part embeddings (the space the part triplet trains), each
L2-normalised. The features file keeps one row per embedding type: global (BNNeck'd, for the global
distance), foreground (BNNeck'd), then the K parts, pre-BNNeck (``part_embeddings="pre_bnneck"``)
or BNNeck'd (``"bnneck"``, [ours]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model.output import DropOutput
from ..parts import FIRST_PART, FOREGROUND, mirror_permutation

# Recipe key eval.part_embeddings: which embedding the part rows of the test features hold.
PART_EMBEDDINGS = ("pre_bnneck", "bnneck")


@dataclass
class Features:
    """embeddings [N, M, D] float32 (M = global, foreground, K parts; L2-normalised), visibility [N, M]
    float32 (global and foreground always 1), pids [N], camids [N], and optionally parsing [N, H/4, W/4]
    uint8 (the predicted label map)."""

    embeddings: np.ndarray
    visibility: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    parsing: np.ndarray | None = None


def test_embeddings(out: DropOutput, part_embeddings: str = "pre_bnneck") -> torch.Tensor:
    """[N, 2 + K, D] float32 rows global, foreground (BNNeck'd) and the parts, before L2 normalisation."""
    if part_embeddings not in PART_EMBEDDINGS:
        raise ValueError(f"part_embeddings must be one of {PART_EMBEDDINGS}, not {part_embeddings!r}")
    parts = out.embeddings if part_embeddings == "pre_bnneck" else out.bn_embeddings
    return torch.cat([out.bn_embeddings[:, :FIRST_PART], parts[:, FIRST_PART:]], dim=1).float()


def flip_rows(parts: Sequence[str]) -> np.ndarray:
    """[M] embedding-row permutation of a mirrored image: its left and right part rows swapped."""
    return np.concatenate([np.arange(FIRST_PART), FIRST_PART - 1 + mirror_permutation(tuple(parts))[1:]])


def test_features(
    model: torch.nn.Module, images: torch.Tensor, rows: torch.Tensor | None, part_embeddings: str = "pre_bnneck"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The test-time features of a batch of normalised images: one formula for extraction, the model
    API and the exported ONNX graph.

    Args:
        images: [N, 3, H, W], normalised as the model was trained.
        rows: with flip test-time augmentation, ``flip_rows(parts)`` as a tensor: the mirrored image's
            rows (left and right parts swapped back) are added before normalising; None without.

    Returns:
        embeddings [N, M, D] float32 L2-normalised, visibility [N, K] float32 (1 = the part wins the
        parsing argmax somewhere), parsing logits [N, K + 1, H/4, W/4] (of the image as given).
    """
    out = model(images)
    emb = test_embeddings(out, part_embeddings)
    if rows is not None:
        emb = emb + test_embeddings(model(images.flip(-1)), part_embeddings)[:, rows]
    return F.normalize(emb, dim=-1), out.visibility.float(), out.parsing_logits


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    loader,
    device: torch.device,
    flip_tta: bool = False,
    autocast_dtype: torch.dtype | None = None,
    keep_parsing: bool = False,
    advance: Callable[[int], None] = lambda n: None,
    *,
    parts: Sequence[str],
    part_embeddings: str = "pre_bnneck",
) -> Features:
    """Run ``model`` (in eval mode) over ``loader`` (items with image, pid, camid).

    Args:
        parts: the model's part names: with ``flip_tta`` the mirrored image's left and right part
            rows are swapped back before the two are averaged.
        part_embeddings: "pre_bnneck" [base] or "bnneck" part rows (``test_embeddings``).
    """
    was_training = model.training
    model.eval()
    rows = torch.from_numpy(flip_rows(parts)).to(device) if flip_tta else None
    embeddings, visibility, pids, camids, parsing = [], [], [], [], []
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            emb, part_visibility, parsing_logits = test_features(model, images, rows, part_embeddings)
        vis = torch.ones(emb.shape[:2], device=device)
        vis[:, FOREGROUND + 1 :] = part_visibility
        embeddings.append(emb.float().cpu())
        visibility.append(vis.cpu())
        pids.append(batch["pid"])
        camids.append(batch["camid"])
        if keep_parsing:
            parsing.append(parsing_logits.argmax(1).to(torch.uint8).cpu())
        advance(len(images))
    model.train(was_training)
    return Features(
        torch.cat(embeddings).numpy(),
        torch.cat(visibility).numpy(),
        torch.cat(pids).numpy(),
        torch.cat(camids).numpy(),
        torch.cat(parsing).numpy() if keep_parsing else None,
    )
