"""Test-time distance between part-based embeddings, visible parts only (BPBreID's ``compute_distance_matrix_using_bp_features``).

A query and a gallery image are compared part by part: the euclidean distance between their
L2-normalised part embeddings, averaged over the parts visible in both, weighted by the product of
the two visibility scores (binary visibility: the plain mean over the shared visible parts). The
foreground (or global) embedding is simply one more part, with visibility 1 on both sides.

For unit vectors ``||a - b||**2 = 2 - 2 a.b``, so each part is one matrix product; the gallery is
processed in chunks so that the work arrays stay bounded. On the CPU this runs on numpy, one part
at a time on a cache-sized [Nq, chunk] array (its BLAS for the products, in-place single-threaded
element-wise passes: torch's multi-threaded element-wise kernels slow down several times as soon as
another process competes for the cores, the normal case on a small shared machine). On a GPU it
runs on torch, all parts at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._device import compute_device, to_tensor

# The distance of a pair with no visible part in common: above 2, the largest euclidean distance
# between unit vectors, so such a pair ranks after every pair that shares a part. A constant (not
# the matrix maximum + 1) keeps the result independent of how queries and gallery are chunked.
UNSHARED_DISTANCE = 3.0

# Default chunks: a [Nq, chunk] array of 2**20 float32 per part on the CPU (4 MB, cache-sized: measured
# fastest), at least 64 images wide for efficient products; a [M, Nq, chunk] array of 2**28 on a GPU.
_CPU_CHUNK_PAIRS = 2**20
_CPU_MIN_CHUNK = 64
_GPU_CHUNK_VALUES = 2**28
# Pairs per block of combined_distances: two float32 work arrays of 8 MB.
_BLOCK_PAIRS = 2**21


def part_distance(
    q_emb: np.ndarray,
    q_vis: np.ndarray,
    g_emb: np.ndarray,
    g_vis: np.ndarray,
    device: str | torch.device | None = None,
    chunk_size: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Visibility-weighted mean of the per-part euclidean distances, for every query-gallery pair.

    ``d(q, g) = sum_m w_m ||q_m - g_m|| / sum_m w_m`` with ``w_m = q_vis[q, m] * g_vis[g, m]``;
    :data:`UNSHARED_DISTANCE` where the weights sum to 0 (no part visible in both).

    Args:
        q_emb: [Nq, M, D] query part embeddings, each L2-normalised by the caller (the distance
            uses ``2 - 2 a.b``, exact only for unit vectors; it is not checked).
        q_vis: [Nq, M] query part visibility in [0, 1] (bool accepted).
        g_emb: [Ng, M, D] gallery part embeddings, L2-normalised.
        g_vis: [Ng, M] gallery part visibility in [0, 1].
        device: where to compute: "cpu" (numpy) or a torch CUDA device; default CUDA when
            available, else the CPU.
        chunk_size: gallery images per chunk; by default 2**20 query-gallery pairs per chunk on
            the CPU (at least 64 gallery images), 2**28 / M on a GPU.
        out: an [Nq, Ng] float32 array (a view is fine) to write the distances into.

    Returns:
        [Nq, Ng] float32 distances (numpy, on the CPU): ``out`` when given.

    Raises:
        ValueError: inconsistent shapes or visibility outside [0, 1] (a caller's contract).
    """
    q_emb, q_vis, g_emb, g_vis = checked_part_inputs(q_emb, q_vis, g_emb, g_vis)
    device = compute_device(device)
    num_query, num_parts, _ = q_emb.shape
    if chunk_size is None:
        if device.type == "cpu":
            chunk_size = max(_CPU_MIN_CHUNK, _CPU_CHUNK_PAIRS // max(num_query, 1))
        else:
            chunk_size = max(1, _GPU_CHUNK_VALUES // max(num_parts * num_query, 1))
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if out is None:
        out = np.empty((num_query, len(g_emb)), np.float32)
    elif out.shape != (num_query, len(g_emb)) or out.dtype != np.float32:
        raise ValueError(
            f"out must be a float32 array of shape {(num_query, len(g_emb))}, got {out.shape} {out.dtype}."
        )
    if device.type == "cpu":
        return _part_distance_numpy(q_emb, q_vis, g_emb, g_vis, chunk_size, out)
    return _part_distance_torch(q_emb, q_vis, g_emb, g_vis, chunk_size, device, out)


def paired_part_distance(a_emb: np.ndarray, a_vis: np.ndarray, b_emb: np.ndarray, b_vis: np.ndarray) -> np.ndarray:
    """:func:`part_distance` of aligned pairs: [P] float32, the distance of ``a[p]`` to ``b[p]`` (arrays
    [P, M, D] and [P, M], already checked; on the CPU). For a few scattered entries of a large matrix."""
    dist = np.einsum("pmd,pmd->pm", np.asarray(a_emb, np.float32), np.asarray(b_emb, np.float32))
    dist *= -2.0
    dist += 2.0
    np.maximum(dist, 0.0, out=dist)
    np.sqrt(dist, out=dist)
    weight = np.asarray(a_vis, np.float32) * np.asarray(b_vis, np.float32)
    dist *= weight
    return weighted_mean_into(dist.sum(axis=1), weight.sum(axis=1), np.empty(len(dist), np.float32))


def unit_distance_into(minus_2a: np.ndarray, b_t: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The formula's per-part term on the CPU, in place: ``||a - b|| = sqrt(max(2 - 2 a.b, 0))`` for unit
    rows, from ``minus_2a`` [A, D] (the rows of a times -2) and ``b_t`` [D, B], into ``out`` [A, B]."""
    np.matmul(minus_2a, b_t, out=out)  # -2 a.b
    out += 2.0
    np.maximum(out, 0.0, out=out)  # rounding can make 2 - 2 a.b slightly negative
    return np.sqrt(out, out=out)


def weighted_mean_into(weighted_sum: np.ndarray, weight: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The formula's mean: ``weighted_sum / weight`` where the pair shares a part, :data:`UNSHARED_DISTANCE`
    where the weights sum to 0, into ``out`` (which may be ``weighted_sum``)."""
    shared = weight > 0
    np.divide(weighted_sum, weight, out=out, where=shared)
    np.copyto(out, UNSHARED_DISTANCE, where=~shared)
    return out


def _part_distance_numpy(
    q_emb: np.ndarray, q_vis: np.ndarray, g_emb: np.ndarray, g_vis: np.ndarray, chunk_size: int, out: np.ndarray
) -> np.ndarray:
    """part_distance on the CPU; arguments as there (checked), ``chunk_size`` gallery images per chunk."""
    num_query, num_parts, _ = q_emb.shape
    num_gallery = len(g_emb)
    # [M, Nq, D], times -2 (exact in floating point) so that the product gives -2 a.b directly.
    queries = np.ascontiguousarray(q_emb.transpose(1, 0, 2), dtype=np.float32) * np.float32(-2)
    query_vis = np.asarray(q_vis, np.float32)
    columns = min(chunk_size, num_gallery)
    part_buffer, sum_buffer = np.empty(num_query * columns, np.float32), np.empty(num_query * columns, np.float32)
    for start in range(0, num_gallery, chunk_size):
        stop = min(start + chunk_size, num_gallery)
        gallery = np.asarray(g_emb[start:stop], np.float32)
        gallery_vis = np.asarray(g_vis[start:stop], np.float32)
        dist = part_buffer[: num_query * (stop - start)].reshape(num_query, -1)
        weighted_sum = sum_buffer[: num_query * (stop - start)].reshape(num_query, -1)
        weighted_sum.fill(0.0)
        for part in range(num_parts):
            unit_distance_into(queries[part], gallery[:, part].T, dist)
            dist *= query_vis[:, part, None]
            dist *= gallery_vis[:, part]
            weighted_sum += dist
        weighted_mean_into(weighted_sum, query_vis @ gallery_vis.T, out[:, start:stop])
    return out


def _part_distance_torch(
    q_emb: np.ndarray,
    q_vis: np.ndarray,
    g_emb: np.ndarray,
    g_vis: np.ndarray,
    chunk_size: int,
    device: torch.device,
    out: np.ndarray,
) -> np.ndarray:
    """part_distance on a torch device (meant for CUDA); arguments as in :func:`_part_distance_numpy`."""
    num_gallery = len(g_emb)
    queries = to_tensor(q_emb, device).transpose(0, 1).contiguous()  # [M, Nq, D]
    query_vis = to_tensor(q_vis, device)
    for start in range(0, num_gallery, chunk_size):
        stop = min(start + chunk_size, num_gallery)
        gallery = to_tensor(g_emb[start:stop], device).permute(1, 2, 0)  # [M, D, chunk]
        gallery_vis = to_tensor(g_vis[start:stop], device)
        dist = torch.bmm(queries, gallery).mul_(-2.0).add_(2.0)  # [M, Nq, chunk]: ||a - b||**2
        dist.clamp_(min=0.0).sqrt_()
        dist.mul_(query_vis.T[:, :, None]).mul_(gallery_vis.T[:, None, :])
        weighted_sum = dist.sum(dim=0)
        weight = query_vis @ gallery_vis.T
        shared = weight > 0
        weighted_sum.div_(torch.where(shared, weight, 1.0)).masked_fill_(~shared, UNSHARED_DISTANCE)
        out[:, start:stop] = weighted_sum.cpu().numpy()
    return out


@dataclass(frozen=True)
class RowSet:
    """The embedding rows a distance averages, and whether they are weighted (by the row weights given:
    the scoring's visibility, 1 for global and foreground) or all count 1."""

    rows: tuple[int, ...]
    visibility: bool

    @property
    def index(self) -> slice | list[int]:
        """The rows as a slice when consecutive (a view of the embeddings, not a copy), else as a list."""
        rows = self.rows
        return slice(rows[0], rows[-1] + 1) if rows == tuple(range(rows[0], rows[-1] + 1)) else list(rows)


def combined_distances(
    a_emb: np.ndarray,
    a_weights: np.ndarray,
    b_emb: np.ndarray,
    b_weights: np.ndarray,
    combinations: Sequence[RowSet],
    out: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """One [Na, Nb] float32 distance matrix per combination, each row's distances computed once.

    For a combination with rows R: ``d(a, b) = sum_{m in R} w_m ||a_m - b_m|| / sum_{m in R} w_m``
    with ``w_m = a_weights[a, m] * b_weights[b, m]`` when it is weighted (else 1), and
    :data:`UNSHARED_DISTANCE` where the weights sum to 0: :func:`part_distance` over rows R.

    Args:
        a_emb: [Na, M, D] L2-normalised embeddings (any float dtype).
        a_weights: [Na, M] float32 row weights in [0, 1] (the scoring's: visibility, 1 for global and
            foreground).
        b_emb: [Nb, M, D] L2-normalised embeddings.
        b_weights: [Nb, M] float32 row weights.
        combinations: the matrices to compute.
        out: [Na, Nb] float32 arrays (views allowed) to write the matrices into, one per combination;
            reusing them from call to call saves faulting in fresh memory each time.

    Returns:
        The matrices, in the order of ``combinations``.
    """
    num_a, num_b = len(a_emb), len(b_emb)
    outputs = list(out) if out is not None else [np.empty((num_a, num_b), np.float32) for _ in combinations]
    for output in outputs:
        output.fill(0.0)
    rows = sorted({m for c in combinations for m in c.rows})
    # Each row of b as a strided [Nb, D] view (BLAS reads it in place); other dtypes converted once.
    b_rows = {m: b_emb[:, m] if b_emb.dtype == np.float32 else np.asarray(b_emb[:, m], np.float32) for m in rows}
    block = max(1, _BLOCK_PAIRS // max(num_b, 1))
    dist_buffer, weighted_buffer = np.empty(block * num_b, np.float32), np.empty(block * num_b, np.float32)
    for start in range(0, num_a, block):
        stop = min(start + block, num_a)
        dist = dist_buffer[: (stop - start) * num_b].reshape(stop - start, num_b)
        weighted = weighted_buffer[: (stop - start) * num_b].reshape(stop - start, num_b)
        for m in rows:
            unit_distance_into(np.asarray(a_emb[start:stop, m], np.float32) * np.float32(-2), b_rows[m].T, dist)
            users = [(c.visibility, output) for c, output in zip(combinations, outputs) if m in c.rows]
            if any(weigh for weigh, _ in users):
                np.multiply(dist, a_weights[start:stop, m, None], out=weighted)
                weighted *= b_weights[:, m]
            for weigh, output in users:
                output[start:stop] += weighted if weigh else dist
        for combo, output in zip(combinations, outputs):
            target = output[start:stop]
            if combo.visibility:
                cols = list(combo.rows)
                weighted_mean_into(target, a_weights[start:stop][:, cols] @ b_weights[:, cols].T, target)
            else:
                target /= np.float32(len(combo.rows))
    return outputs


def checked_part_inputs(
    q_emb: np.ndarray, q_vis: np.ndarray, g_emb: np.ndarray, g_vis: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four arrays as numpy, checked for shapes and visibility range."""
    q_emb, q_vis, g_emb, g_vis = (np.asarray(a) for a in (q_emb, q_vis, g_emb, g_vis))
    if q_emb.ndim != 3 or g_emb.ndim != 3 or q_emb.shape[1:] != g_emb.shape[1:]:
        raise ValueError(
            f"part embeddings must be [N, M, D] with the same M and D on both sides, "
            f"got {q_emb.shape} and {g_emb.shape}."
        )
    if q_vis.shape != q_emb.shape[:2] or g_vis.shape != g_emb.shape[:2]:
        raise ValueError(
            f"visibility must be [N, M] like the embeddings' first two dimensions, got {q_vis.shape} for "
            f"{q_emb.shape} and {g_vis.shape} for {g_emb.shape}."
        )
    for name, vis in (("query", q_vis), ("gallery", g_vis)):
        if vis.size and not (vis.min() >= 0 and vis.max() <= 1):
            raise ValueError(f"{name} visibility must be in [0, 1], got values in [{vis.min()}, {vis.max()}].")
    return q_emb, q_vis, g_emb, g_vis
