"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), equal to the authors' numpy code, in sparse form.

Notation of the original: N = Nq + Ng points, queries first; ``D`` the [N, N] concatenated distance
matrix [[q_q, q_g], [q_g.T, g_g]]; ``A[i, j] = D[j, i]**2 / max_k D[k, i]**2`` its squared,
column-normalised, transposed float32 form (``original_dist``); ``V[i]`` the Gaussian weights
exp(-A[i, j]) over the k-reciprocal expansion of point i, normalised to sum 1, then averaged over
the k2 nearest neighbours (local query expansion); the result is, for query rows and gallery
columns, ``(1 - lambda) * jaccard + lambda * A`` with ``jaccard = 1 - m / (2 - m)`` and
``m = sum_k min(V[q, k], V[g, k])``.

The published code keeps D, A, its full argsort, V and the expanded V as dense [N, N] arrays and
loops over points in Python: about 65 s and 8.5 GB at Market-1501 size. Here:

* only the top max(k1 + 1, k2) neighbours of each point are kept (torch.topk over blocks of rows
  of A; a row of A is a column of D, read from the input matrices by tiled transposed copies, and
  D is never concatenated);
* V has a few dozen non-zeros per row, so it is a scipy.sparse matrix; reciprocity, the 2/3
  expansion rule and the query expansion are sparse products;
* the min-sum m is accumulated over the (query, gallery) pairs that share a non-zero column of V,
  for query rows only.

On a CUDA device (``device="cuda"``, the default when there is one) the two dense stages run on
the GPU: the neighbour search over blocks of D's columns taken from the input matrices moved there
once, and the min-sum, for blocks of query rows of V made dense, gathered against every gallery
non-zero of V (V >= 0, so min(0, v) adds nothing) and summed per gallery point with index_add_.
The sparse k-reciprocal stages stay on the CPU (they are a few ms of scipy).

From embeddings (:func:`re_rank_embeddings`, :func:`re_ranked_blocks`: what ``drop evaluate
--rerank`` runs), D = part_distance([q; g], [q; g]) is never built either: blocks of its rows are
computed from each block's first point on (D is symmetric: the upper triangle, about half of the
N x N products), giving those rows' neighbours and, read by columns, every later point's, merged
into a running top k per point; the entries V needs are computed pair by pair from the embeddings,
and the query-gallery rows of the last stage block by block. Memory: the embeddings, the neighbour
lists, V and a few hundred MB of blocks (the [Nq, Ng] output only if it is returned whole):
0.9 GB beyond the embeddings at MSMT17 size (benchmarks/bench_scale.py), where the matrix form
would need 35 GB.

Same inputs give the original's output (float32 rounding apart, about 1e-7), except where equal
distances make the original's own neighbour order arbitrary (its argsort is not stable).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import DropError
from ..recipe import EvalConfig
from ._device import compute_device, to_tensor
from .distance import RowSet, checked_part_inputs, combined_distances, paired_part_distance, part_distance

# The defaults of the parameters: Zhong et al.'s (as the recipe's eval section states them).
K1, K2, LAMBDA = EvalConfig.rerank_k1, EvalConfig.rerank_k2, EvalConfig.rerank_lambda

# Rows of A per block of the neighbour search: 2**22 float32 values (16 MB) per block.
_BLOCK_VALUES = 2**22
# Tile height of the transposed copies: keeps the source and destination tiles in the CPU caches.
_TILE_ROWS = 512
# (query, gallery) pairs per block of the min-sum accumulation, and query rows per block at most.
_BLOCK_PAIRS = 2**21
_BLOCK_QUERIES = 64
# From embeddings: D's values per block of rows (256 MB), and embedding values gathered per block of pairs.
_EMBEDDING_BLOCK_VALUES = 2**26
# ... and at most this many rows: many blocks, so that the upper triangle is about half of D.
_EMBEDDING_BLOCK_ROWS = 1024
_PAIR_BLOCK_VALUES = 2**22
# Pairs looked up in the neighbour lists at a time (a [pairs, k] comparison: about 20 MB).
_LOOKUP_PAIRS = 2**17
# V, its transposed copies and the k-reciprocal products per point (k1 = 20, k2 = 6; see
# re_rank_embeddings_memory_bytes).
_SPARSE_BYTES_PER_POINT = 1200
# On a GPU: values per block of the neighbour search and per gathered block of the min-sum (1 GB).
_GPU_BLOCK_VALUES = 2**28


def re_rank_memory_bytes(
    num_query: int, num_gallery: int, k1: int = K1, k2: int = K2, include_inputs: bool = True
) -> int:
    """Upper bound of the peak memory of :func:`re_rank` (typically a few hundred MB at Market size).

    Args:
        num_query: Nq.
        num_gallery: Ng.
        k1: the re-ranking's k1 (it bounds the non-zeros of V).
        k2: the re-ranking's k2 (likewise).
        include_inputs: count the three float32 input matrices (q_g, q_q, g_g) too.

    Returns:
        Bytes: the [Nq, Ng] float32 output, the sparse matrices, the work blocks (and the inputs).
    """
    n = num_query + num_gallery
    # A row of V has at most (k1 + 1) * (round(k1 / 2) + 2) non-zeros (the k-reciprocal set and the
    # sets it adds), k2 times more after query expansion; 12 bytes each, twice for the products.
    sparse = 24 * max(k2, 1) * (k1 + 1) * (int(np.around(k1 / 2.0)) + 2) * n
    work = 4 * _BLOCK_VALUES + 8 * _BLOCK_QUERIES * num_gallery + 64 * _BLOCK_PAIRS
    total = 4 * num_query * num_gallery + sparse + work
    if include_inputs:
        total += 4 * (num_query * num_gallery + num_query**2 + num_gallery**2)
    return total


def check_re_rank_memory(
    num_query: int, num_gallery: int, k1: int = K1, k2: int = K2, include_inputs: bool = True
) -> None:
    """Raise a DropError when re-ranking Nq x Ng may not fit in the memory available now.

    Call it before computing the q_q and g_g distance matrices (``include_inputs=True``, the
    default); :func:`re_rank` calls it with its inputs already allocated. The CPU's memory is
    checked in every case: the inputs and the result live there, also when the GPU computes.

    Raises:
        DropError: saying how much memory is needed, with the bounded-memory alternative.
    """
    needed = re_rank_memory_bytes(num_query, num_gallery, k1, k2, include_inputs)
    _check_available(
        needed, _available_memory_bytes(), f"re-ranking {num_query} queries x {num_gallery} gallery images", "of memory"
    )


def re_rank_embeddings_memory_bytes(
    num_query: int,
    num_gallery: int,
    rows: int,
    dim: int,
    k1: int = K1,
    k2: int = K2,
    held_output: bool = True,
    distances: int = 1,
) -> int:
    """The peak memory of :func:`re_rank_embeddings` (``held_output``) or :func:`re_ranked_blocks`
    beyond their inputs: the neighbour lists and V, plus the largest stage's work blocks
    (``distances``: the row sets of :func:`re_ranked_row_sets`, ``rows`` the largest one's).

    The stages' blocks are the module's constants; V and the k-reciprocal products take about
    ``_SPARSE_BYTES_PER_POINT`` per point at Zhong et al.'s k1 = 20, k2 = 6 (measured on clustered
    embeddings, `benchmarks/bench_scale.py`), scaled with k1 and k2 as their non-zeros are.
    """
    n = num_query + num_gallery
    block_rows = max(1, min(n, _EMBEDDING_BLOCK_ROWS, _EMBEDDING_BLOCK_VALUES // (n * distances)))
    pair_chunk = max(1, _PAIR_BLOCK_VALUES // (rows * dim))
    # part_distance's work: a copy of the block's rows and two cache-sized [rows, chunk] arrays.
    distance_work = 4 * (block_rows * rows * dim + 2 * max(block_rows * 64, 2**20))
    # The blocks of every set, one transposed copy, and combined_distances' two [pairs] work arrays.
    neighbours = (distances + 1) * 4 * block_rows * n + distance_work + 8 * 2**21
    gathered = 4 * 2 * pair_chunk * (rows * dim + rows)  # two gathered sides
    sparse = int(_SPARSE_BYTES_PER_POINT * n * (k1 / K1) * (k2 / K2) ** 0.5)
    cached_rows = max(1, min(num_query, _EMBEDDING_BLOCK_VALUES // max(num_gallery, 1)))
    min_sum_pairs = min(_BLOCK_PAIRS, _BLOCK_QUERIES * num_gallery)  # (query, gallery) pairs of one block
    final = 4 * cached_rows * num_gallery + distance_work + 20 * _BLOCK_QUERIES * num_gallery + 48 * min_sum_pairs
    held = distances * (8 * n * max(k1 + 1, k2) + 4 * n)
    total = held + sparse + max(neighbours, gathered, final)
    return total + (4 * num_query * num_gallery if held_output else 0)


def check_re_rank_embeddings_memory(
    num_query: int,
    num_gallery: int,
    rows: int,
    dim: int,
    k1: int = K1,
    k2: int = K2,
    held_output: bool = True,
    distances: int = 1,
) -> None:
    """Raise a DropError when :func:`re_rank_embeddings` (or, without ``held_output``,
    :func:`re_ranked_blocks`) may not fit in the memory available now, its inputs already held."""
    needed = re_rank_embeddings_memory_bytes(num_query, num_gallery, rows, dim, k1, k2, held_output, distances)
    what = f"re-ranking {num_query} queries x {num_gallery} gallery images"
    available = _available_memory_bytes()
    if available is not None and needed > available:
        streamed = re_rank_embeddings_memory_bytes(num_query, num_gallery, rows, dim, k1, k2, False, distances)
        streaming = "rank the blocks as they come (re_ranked_blocks, as drop evaluate does), "
        raise DropError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory, {available / 2**30:.1f} GiB available.",
            hint=f"Free memory, {streaming if held_output and streamed < available else ''}"
            "or evaluate without --rerank (that works for any gallery size).",
        )


def _check_gpu_memory(num_query: int, num_gallery: int, device: torch.device) -> None:
    """Raise a DropError when the GPU cannot hold the three input matrices and the work blocks."""
    needed = 4 * (num_query * num_gallery + num_query**2 + num_gallery**2) + 8 * _GPU_BLOCK_VALUES
    free, _ = torch.cuda.mem_get_info(device)
    _check_available(
        needed,
        free,
        f"re-ranking {num_query} queries x {num_gallery} gallery images on {device}",
        "of GPU memory",
        "Or re-rank on the CPU (device='cpu').",
    )


def _check_available(needed: int, available: int | None, what: str, memory: str, more: str = "") -> None:
    if available is not None and needed > available:
        raise DropError(
            f"{what} needs about {needed / 2**30:.1f} GiB {memory}, {available / 2**30:.1f} GiB available.",
            hint="Evaluate without re-ranking: evaluate_rank_chunked works in bounded memory for any gallery "
            f"size. {more}".strip(),
        )


def _available_memory_bytes() -> int | None:
    """Memory available to a new allocation (Linux MemAvailable; free pages elsewhere; None if unknown)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def re_rank(
    q_g_dist: np.ndarray,
    q_q_dist: np.ndarray,
    g_g_dist: np.ndarray,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Re-ranked query-gallery distances (k-reciprocal encoding, Zhong et al., CVPR 2017).

    Args:
        q_g_dist: [Nq, Ng] query-gallery distances.
        q_q_dist: [Nq, Nq] query-query distances.
        g_g_dist: [Ng, Ng] gallery-gallery distances.
        k1: size of the k-reciprocal neighbourhoods (the point itself included, as k1 + 1).
        k2: neighbours averaged by the local query expansion (1: none).
        lambda_value: weight of the original distance against the Jaccard distance.
        device: "cpu" or a torch CUDA device for the dense stages; default CUDA when available.

    Returns:
        [Nq, Ng] float32 re-ranked distances (numpy, on the CPU).

    Raises:
        ValueError: inconsistent shapes or bad parameters (a caller's contract).
        DropError: non-finite distances, or not enough memory.
    """
    q_g, q_q, g_g = (np.asarray(d) for d in (q_g_dist, q_q_dist, g_g_dist))
    _check_inputs(q_g, q_q, g_g, k1, k2, lambda_value)
    num_query, num_gallery = q_g.shape
    device = compute_device(device)
    check_re_rank_memory(num_query, num_gallery, k1, k2, include_inputs=False)
    if device.type == "cpu":
        blocks = _ConcatenatedDistances(q_g, q_q, g_g)
        neighbours, column_max = _nearest_neighbours(blocks, min(max(k1 + 1, k2), blocks.size))
        weights = _expanded_weights(blocks, neighbours, column_max, k1, k2)
        return _final_distance(weights, q_g, column_max[:num_query], lambda_value)
    _check_gpu_memory(num_query, num_gallery, device)
    return _re_rank_torch(q_g, q_q, g_g, k1, k2, lambda_value, device)


def re_rank_embeddings(
    q_emb: np.ndarray,
    q_vis: np.ndarray,
    g_emb: np.ndarray,
    g_vis: np.ndarray,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """:func:`re_rank` of the part distances of embeddings, never holding an [N, N] matrix.

    Equal to ``re_rank(part_distance(q, g), part_distance(q, q), part_distance(g, g), ...)``: D's
    rows are computed block by block from the embeddings and only each point's nearest neighbours
    are kept; the entries of D the k-reciprocal weights need are computed pair by pair. Memory:
    the [Nq, Ng] output, the sparse V and work blocks (:func:`re_rank_embeddings_memory_bytes`); use
    :func:`re_ranked_blocks` to rank without holding even the output.

    Args:
        q_emb, q_vis, g_emb, g_vis: as :func:`~drop_cli.evaluation.distance.part_distance` takes them
            (L2-normalised [N, M, D] embeddings, [N, M] visibility weights).
        k1, k2, lambda_value: as :func:`re_rank`.
        device: where the part distances are computed ("cpu" or a CUDA device; default CUDA when
            available); the neighbour selection and the sparse stages run on the CPU.

    Returns:
        [Nq, Ng] float32 re-ranked distances.
    """
    q_emb, q_vis, g_emb, g_vis = checked_part_inputs(q_emb, q_vis, g_emb, g_vis)
    _, rows, dim = q_emb.shape
    check_re_rank_embeddings_memory(len(q_emb), len(g_emb), rows, dim, k1, k2, held_output=True)
    out = np.empty((len(q_emb), len(g_emb)), np.float32)
    for start, block in re_ranked_blocks(q_emb, q_vis, g_emb, g_vis, k1, k2, lambda_value, device):
        out[start : start + len(block)] = block
    return out


def re_ranked_blocks(
    q_emb: np.ndarray,
    q_vis: np.ndarray,
    g_emb: np.ndarray,
    g_vis: np.ndarray,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    device: str | torch.device | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`re_rank_embeddings` as (start, [rows, Ng] float32) for consecutive blocks of queries,
    for a consumer that ranks them as they come (`metrics.RankAccumulator`). The yielded array is
    reused: read it before asking for the next block."""
    for _, start, block in re_ranked_row_sets(q_emb, q_vis, g_emb, g_vis, None, k1, k2, lambda_value, device):
        yield start, block


def re_ranked_row_sets(
    q_emb: np.ndarray,
    q_weights: np.ndarray,
    g_emb: np.ndarray,
    g_weights: np.ndarray,
    row_sets: Sequence[RowSet] | None,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    device: str | torch.device | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """:func:`re_ranked_blocks` of several distances over the same embeddings at once (the ablation
    grid's re-ranked modes): (row set index, start, block), one row set after the other. The
    neighbour search, the costly part, computes each embedding row's products once for every set
    that uses it (`combined_distances`).

    Args:
        q_weights, g_weights: [N, M] row weights (visibility; 1 for rows always seen), used by the
            sets that are weighted.
        row_sets: the distances (None: every row, weighted, i.e. :func:`part_distance` itself).
    """
    points = _EmbeddingDistances(q_emb, q_weights, g_emb, g_weights, compute_device(device), row_sets)
    if points.num_query == 0 or points.size == points.num_query:
        raise ValueError(
            f"re-ranking needs at least one query and one gallery image, got {len(q_emb)} and {len(g_emb)}."
        )
    _check_parameters(k1, k2, lambda_value)
    num_gallery = points.size - points.num_query
    dim = points.query.shape[2]
    rows = max(len(r.rows) for r in points.row_sets)
    count = len(points.row_sets)
    check_re_rank_embeddings_memory(points.num_query, num_gallery, rows, dim, k1, k2, False, distances=count)
    neighbour_lists = points.nearest_neighbours(min(max(k1 + 1, k2), points.size))
    for index, (neighbours, squared, column_max) in enumerate(neighbour_lists):
        view = points.row_set(index, neighbours, squared)
        weights = _expanded_weights(view, neighbours, column_max, k1, k2)
        for start, block in _final_blocks(
            weights, view.query_gallery_rows, column_max[: points.num_query], lambda_value
        ):
            yield index, start, block


def _re_rank_torch(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lambda_value: float, device: torch.device
) -> np.ndarray:
    """re_rank's GPU path (it runs on any torch device): the dense stages on ``device``, the sparse on the CPU."""
    blocks = _ConcatenatedDistances(q_g, q_q, g_g)
    on_device = _ConcatenatedDistances(*(to_tensor(d, device) for d in (q_g, q_q, g_g)))
    neighbours, column_max = _nearest_neighbours_torch(on_device, min(max(k1 + 1, k2), blocks.size))
    weights = _expanded_weights(blocks, neighbours, column_max, k1, k2)
    return _final_distance_torch(weights, on_device.q_g, column_max[: len(q_g)], lambda_value)


def _expanded_weights(
    blocks: _ConcatenatedDistances | _RowSetDistances,
    neighbours: np.ndarray,
    column_max: np.ndarray,
    k1: int,
    k2: int,
) -> sp.csr_matrix:
    """V: the k-reciprocal weights, then the local query expansion over k2 neighbours (k2 > 1)."""
    weights = _k_reciprocal_weights(blocks, neighbours, column_max, k1)
    return _local_query_expansion(weights, neighbours[:, :k2]) if k2 != 1 else weights


def _check_inputs(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lambda_value: float) -> None:
    if q_g.ndim != 2 or q_q.shape != (q_g.shape[0],) * 2 or g_g.shape != (q_g.shape[1],) * 2:
        raise ValueError(
            f"re-ranking needs q_g [Nq, Ng], q_q [Nq, Nq] and g_g [Ng, Ng] distances, got shapes "
            f"{q_g.shape}, {q_q.shape} and {g_g.shape}."
        )
    if min(q_g.shape) == 0:
        raise ValueError(f"re-ranking needs at least one query and one gallery image, got {q_g.shape}.")
    _check_parameters(k1, k2, lambda_value)


def _check_parameters(k1: int, k2: int, lambda_value: float) -> None:
    for name, value in (("k1", k1), ("k2", k2)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}.")


class _ConcatenatedDistances:
    """Read access to D = [[q_q, q_g], [q_g.T, g_g]] without building it (numpy arrays or tensors)."""

    def __init__(self, q_g: Any, q_q: Any, g_g: Any):
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.num_query = q_g.shape[0]
        self.size = sum(q_g.shape)

    def ranges(self, block: int) -> list[tuple[int, int]]:
        return _point_ranges(self.num_query, self.size, block)

    def column_blocks(self, start: int, stop: int) -> tuple:
        """D[:, start:stop].T as its query-column and gallery-column blocks (transposed views of the
        inputs; a range from :meth:`ranges`)."""
        nq = self.num_query
        if stop <= nq:
            return self.q_q[:, start:stop].T, self.q_g[start:stop]
        return self.q_g[:, start - nq : stop - nq].T, self.g_g[:, start - nq : stop - nq].T

    def columns(self, start: int, stop: int, out: np.ndarray) -> None:
        """Write D[:, start:stop].T into ``out`` [stop - start, N] (numpy inputs)."""
        query_part, gallery_part = self.column_blocks(start, stop)
        _copy_tiled(out[:, : self.num_query], query_part)
        _copy_tiled(out[:, self.num_query :], gallery_part)

    def values(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """D[rows, cols] as float32, for index arrays [P]."""
        nq = self.num_query
        out = np.empty(len(rows), np.float32)
        row_query, col_query = rows < nq, cols < nq
        for sel, block, r, c in (
            (row_query & col_query, self.q_q, rows, cols),
            (row_query & ~col_query, self.q_g, rows, cols - nq),
            (~row_query & col_query, self.q_g, cols, rows - nq),  # D[r, c] = q_g[c, r - Nq]
            (~row_query & ~col_query, self.g_g, rows - nq, cols - nq),
        ):
            out[sel] = block[r[sel], c[sel]]
        return out


class _EmbeddingDistances:
    """D = part_distance([q; g], [q; g]) under one or several row sets, read from the embeddings and
    never built: the nearest neighbours of every point under each set (each pair's distance computed
    once, D being symmetric, and each embedding row's products once for all the sets), and, per set
    (:meth:`row_set`), scattered entries and query-gallery rows."""

    def __init__(
        self,
        q_emb: np.ndarray,
        q_weights: np.ndarray,
        g_emb: np.ndarray,
        g_weights: np.ndarray,
        device: torch.device,
        row_sets: Sequence[RowSet] | None = None,
    ):
        self.query, self.query_w, self.gallery, self.gallery_w = checked_part_inputs(q_emb, q_weights, g_emb, g_weights)
        self.device = device
        self.row_sets = list(row_sets) if row_sets else [RowSet(tuple(range(self.query.shape[1])), True)]
        self.num_query = len(q_emb)
        self.size = self.num_query + len(g_emb)
        count = len(self.row_sets)
        self.block_rows = max(1, min(self.size, _EMBEDDING_BLOCK_ROWS, _EMBEDDING_BLOCK_VALUES // (self.size * count)))

    def _points(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and weights of points start..stop-1, on one side of the query/gallery boundary."""
        if stop <= self.num_query:
            return self.query[start:stop], self.query_w[start:stop]
        first, last = start - self.num_query, stop - self.num_query
        return self.gallery[first:last], self.gallery_w[first:last]

    def _rows_from(self, start: int, stop: int, outs: list[np.ndarray]) -> None:
        """D[start:stop, start:] of every row set into ``outs`` [stop - start, N - start] (``start:stop``
        on one side)."""
        emb, weights = self._points(start, stop)
        for first, last in ((start, self.num_query), (max(start, self.num_query), self.size)):
            if first >= last:
                continue
            side = self._points(first, last)
            views = [out[:, first - start : last - start] for out in outs]
            if self.device.type == "cpu":
                combined_distances(emb, weights, *side, self.row_sets, out=views)
            else:
                for row_set, view in zip(self.row_sets, views):
                    part_distance(*_selected(emb, weights, row_set), *_selected(*side, row_set), self.device, out=view)

    def nearest_neighbours(self, k: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:func:`_nearest_neighbours` of D under each row set (and the neighbours' D**2). Each block of rows is computed from its own
        first point on (the upper triangle): it gives its rows' candidates, and, read by columns, the
        candidates of every later point; each point keeps a running top k (``_merge``)."""
        n, count = self.size, len(self.row_sets)
        best = [torch.full((n, k), float("inf")) for _ in range(count)]
        best_index = [torch.zeros((n, k), dtype=torch.int64) for _ in range(count)]
        column_max = [torch.zeros(n) for _ in range(count)]
        buffers = np.empty((count, self.block_rows * n), np.float32)
        for start, stop in _point_ranges(self.num_query, n, self.block_rows):
            outs = [buffer[: (stop - start) * (n - start)].reshape(stop - start, n - start) for buffer in buffers]
            self._rows_from(start, stop, outs)
            for rows, top, top_index, maxima in zip(outs, best, best_index, column_max):
                np.square(rows, out=rows)
                block = torch.from_numpy(rows)
                values, index = torch.topk(block, min(k, n - start), dim=1, largest=False)
                _merge(top, top_index, start, values, index + start)
                maxima[start:stop] = torch.maximum(maxima[start:stop], block.amax(dim=1))
                if stop < n:  # the later points' candidates among this block's rows
                    later = block[:, stop - start :].T.contiguous()
                    values, index = torch.topk(later, min(k, stop - start), dim=1, largest=False)
                    _merge(top, top_index, stop, values, index + start)
                    maxima[stop:] = torch.maximum(maxima[stop:], later.amax(dim=1))
        # Per set: the neighbours [N, k], their D**2, and D**2's column maxima.
        return [(i.numpy(), b.numpy(), _checked_column_max(m.numpy())) for i, b, m in zip(best_index, best, column_max)]

    def row_set(self, index: int, neighbours: np.ndarray, squared: np.ndarray) -> _RowSetDistances:
        """Row set ``index``'s D, knowing its nearest ``neighbours`` and their squared distances."""
        return _RowSetDistances(self, self.row_sets[index], neighbours, squared)


class _RowSetDistances:
    """One row set's D: scattered entries (:meth:`values`, as `_ConcatenatedDistances` gives them) and
    query-gallery rows."""

    def __init__(self, points: _EmbeddingDistances, row_set: RowSet, neighbours: np.ndarray, squared: np.ndarray):
        self.num_query, self.device = points.num_query, points.device
        self.neighbours, self.squared = neighbours, squared  # [N, k] nearest points and their D**2
        self.query, self.query_w = _selected(points.query, points.query_w, row_set)
        self.gallery, self.gallery_w = _selected(points.gallery, points.gallery_w, row_set)
        self.pair_chunk = max(1, _PAIR_BLOCK_VALUES // (self.query.shape[1] * self.query.shape[2]))
        self._cached: tuple[int, int, np.ndarray] | None = None

    def values(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """D[rows, cols] as float32, for index arrays [P]: from the neighbour search where one point is
        among the other's nearest (most of the pairs re-ranking asks for), else pair by pair; a block of
        pairs at a time."""
        out = np.empty(len(rows), np.float32)
        for start in range(0, len(rows), _LOOKUP_PAIRS):
            stop = min(start + _LOOKUP_PAIRS, len(rows))
            out[start:stop] = self._known_or_computed(rows[start:stop], cols[start:stop])
        return out

    def _known_or_computed(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), np.float32)
        todo = np.ones(len(rows), bool)
        for a, b in ((rows, cols), (cols, rows)):
            match = self.neighbours[a] == b[:, None]  # [P, k]
            found = todo & match.any(axis=1)
            out[found] = np.sqrt(self.squared[a[found], match[found].argmax(axis=1)])
            todo &= ~found
        left = np.flatnonzero(todo)
        for start in range(0, len(left), self.pair_chunk):
            pairs = left[start : start + self.pair_chunk]
            a, a_vis = self._gather(rows[pairs])
            b, b_vis = self._gather(cols[pairs])
            out[pairs] = paired_part_distance(a, a_vis, b, b_vis)
        return out

    def _gather(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        is_query = points < self.num_query
        emb = np.empty((len(points), *self.query.shape[1:]), np.float32)
        vis = np.empty((len(points), self.query.shape[1]), np.float32)
        emb[is_query], vis[is_query] = self.query[points[is_query]], self.query_w[points[is_query]]
        gallery = points[~is_query] - self.num_query
        emb[~is_query], vis[~is_query] = self.gallery[gallery], self.gallery_w[gallery]
        return emb, vis

    def query_gallery_rows(self, start: int, stop: int) -> np.ndarray:
        """part_distance(q[start:stop], g), computed a few hundred queries at a time (consecutive
        requests, as the final stage makes them, reuse the block)."""
        if self._cached is None or not (self._cached[0] <= start and stop <= self._cached[1]):
            last = min(self.num_query, max(stop, start + max(1, _EMBEDDING_BLOCK_VALUES // len(self.gallery))))
            self._cached = None  # freed before the next block is made, not after
            block = part_distance(
                self.query[start:last], self.query_w[start:last], self.gallery, self.gallery_w, device=self.device
            )
            self._cached = (start, last, block)
        first, _, block = self._cached
        return block[start - first : stop - first]


def _selected(emb: np.ndarray, weights: np.ndarray, row_set: RowSet) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings and weights of ``row_set``'s rows (views when the rows are consecutive); all ones
    for an unweighted set."""
    index = row_set.index
    chosen = weights[:, index]
    return emb[:, index], chosen if row_set.visibility else np.ones_like(chosen)


def _merge(best: torch.Tensor, best_index: torch.Tensor, first: int, values: torch.Tensor, index: torch.Tensor) -> None:
    """Points first.. keep their k smallest of (their best so far, the new candidates ``values``/``index``
    [P, c]); only the points that some candidate improves are merged."""
    current = best[first : first + len(values)]
    improved = torch.nonzero(values[:, 0] < current[:, -1]).squeeze(1)
    if len(improved) == 0:
        return
    points = improved + first
    merged = torch.cat([best[points], values[improved]], dim=1)
    indices = torch.cat([best_index[points], index[improved]], dim=1)
    top, order = torch.topk(merged, best.shape[1], dim=1, largest=False, sorted=True)
    best[points], best_index[points] = top, torch.gather(indices, 1, order)


def _point_ranges(num_query: int, size: int, block: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges of at most ``block`` points, none straddling queries and gallery."""
    queries = [(s, min(s + block, num_query)) for s in range(0, num_query, block)]
    return queries + [(s, min(s + block, size)) for s in range(num_query, size, block)]


def _copy_tiled(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = src, tile by tile: for a transposed view, a plain strided copy of a large matrix is
    several times slower."""
    for start in range(0, src.shape[1], _TILE_ROWS):
        dst[:, start : start + _TILE_ROWS] = src[:, start : start + _TILE_ROWS]


def _nearest_neighbours(blocks: _ConcatenatedDistances, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest points of every point under A, and the column maxima of D**2.

    Returns:
        ``neighbours`` [N, k] int64, nearest first (the point itself usually first), and
        ``column_max`` [N] float32, ``max_j D[j, i]**2`` (the normaliser of row i of A).
    """
    n = blocks.size
    neighbours = np.empty((n, k), np.int64)
    column_max = np.empty(n, np.float32)
    buffer = np.empty((max(1, min(n, _BLOCK_VALUES // n)), n), np.float32)
    for start, stop in blocks.ranges(len(buffer)):
        rows = buffer[: stop - start]
        blocks.columns(start, stop, rows)
        np.square(rows, out=rows)
        column_max[start:stop] = rows.max(axis=1)
        # A row of A is this row divided by its maximum: the same neighbours.
        nearest = torch.topk(torch.from_numpy(rows), k, dim=1, largest=False, sorted=True).indices
        neighbours[start:stop] = nearest.numpy()
    return neighbours, _checked_column_max(column_max)


def _checked_column_max(column_max: np.ndarray) -> np.ndarray:
    """The column maxima, checked finite, with 0 replaced by 1 (an all-zero column: the original
    divides 0 by 0, NaN)."""
    if not np.isfinite(column_max).all():
        raise DropError("the re-ranking distances have NaN or infinite values.")
    column_max[column_max == 0] = 1.0
    return column_max


def _nearest_neighbours_torch(blocks: _ConcatenatedDistances, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_nearest_neighbours` with ``blocks`` holding tensors on a GPU; same results, numpy."""
    neighbours, column_max = [], []
    for start, stop in blocks.ranges(max(1, _GPU_BLOCK_VALUES // blocks.size)):
        rows = torch.cat(blocks.column_blocks(start, stop), dim=1).square_()
        column_max.append(rows.amax(dim=1))
        neighbours.append(torch.topk(rows, k, dim=1, largest=False, sorted=True).indices)
        del rows
    return torch.cat(neighbours).cpu().numpy(), _checked_column_max(torch.cat(column_max).cpu().numpy())


def _neighbour_graph(neighbours: np.ndarray) -> sp.csr_matrix:
    """[N, N] 0/1 matrix with a 1 at (i, j) for each j in ``neighbours[i]`` ([N, k])."""
    n, k = neighbours.shape
    return sp.csr_matrix((np.ones(n * k, np.float32), neighbours.ravel(), np.arange(0, n * k + 1, k)), (n, n))


def _k_reciprocal_weights(
    blocks: _ConcatenatedDistances | _RowSetDistances, neighbours: np.ndarray, column_max: np.ndarray, k1: int
) -> sp.csr_matrix:
    """V before query expansion: exp(-A) over each point's expanded k-reciprocal set, rows summing to 1.

    R(i) = {j in top(k1 + 1) of i : i in top(k1 + 1) of j}; with R'(c) the same for round(k1 / 2),
    every c in R(i) with |R'(c) & R(i)| > 2/3 |R'(c)| adds R'(c) to the expansion of i.
    """
    n = len(neighbours)
    forward = _neighbour_graph(neighbours[:, : k1 + 1])
    reciprocal = forward.multiply(forward.T).tocsr()
    half = _neighbour_graph(neighbours[:, : int(np.around(k1 / 2.0)) + 1])  # as the original: half to even
    half_reciprocal = half.multiply(half.T).tocsr()
    overlap = (reciprocal @ half_reciprocal.T).multiply(reciprocal).tocsr()  # |R'(c) & R(i)| at (i, c in R(i))
    candidate_size = np.diff(half_reciprocal.indptr)
    overlap.data = (overlap.data > 2.0 / 3.0 * candidate_size[overlap.indices]).astype(np.float32)
    overlap.eliminate_zeros()
    expansion = (reciprocal + overlap @ half_reciprocal).tocsr()
    expansion.sort_indices()

    rows = np.repeat(np.arange(n), np.diff(expansion.indptr))
    cols = expansion.indices
    weight = np.exp(-(np.square(blocks.values(cols, rows)) / column_max[rows]))  # exp(-A[i, j])
    row_sum = np.bincount(rows, weights=weight, minlength=n).astype(np.float32)
    weight /= row_sum[rows]
    return sp.csr_matrix((weight, cols, expansion.indptr), shape=(n, n))


def _local_query_expansion(weights: sp.csr_matrix, nearest: np.ndarray) -> sp.csr_matrix:
    """Each row of V replaced by the mean of the rows of its ``nearest`` [N, k2] points."""
    n, k2 = nearest.shape
    mean = sp.csr_matrix((np.full(n * k2, 1.0 / k2, np.float32), nearest.ravel(), np.arange(0, n * k2 + 1, k2)), (n, n))
    return (mean @ weights).tocsr()


def _final_distance(weights: sp.csr_matrix, q_g: np.ndarray, column_max: np.ndarray, lambda_value: float) -> np.ndarray:
    """(1 - lambda) * Jaccard + lambda * A for query rows and gallery columns, [Nq, Ng] float32.

    Args:
        weights: [N, N] V after query expansion.
        q_g: [Nq, Ng] query-gallery distances: A[q, Nq + g] = D[Nq + g, q]**2 / max = q_g[q, g]**2 / max.
        column_max: [Nq] those maxima, the normalisers of the query rows of A.
        lambda_value: weight of A.
    """
    out = np.empty(q_g.shape, np.float32)
    for start, block in _final_blocks(weights, lambda start, stop: q_g[start:stop], column_max, lambda_value):
        out[start : start + len(block)] = block
    return out


def _final_blocks(
    weights: sp.csr_matrix,
    q_g_rows: Callable[[int, int], np.ndarray],
    column_max: np.ndarray,
    lambda_value: float,
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`_final_distance` block by block: (start, [rows, Ng] float32) for consecutive blocks of
    queries, ``q_g_rows(start, stop)`` giving their query-gallery distances. The yielded array is
    reused: read it before asking for the next."""
    num_query = len(column_max)
    num_gallery = weights.shape[0] - num_query
    query_rows = weights[:num_query]
    gallery_columns = weights[num_query:].tocsc()  # for each column k, the gallery points with V[g, k] > 0
    # Work arrays allocated once (fresh memory for every block is slow to fault in).
    jaccard = np.empty((_BLOCK_QUERIES, num_gallery), np.float32)
    scratch = np.empty((_BLOCK_QUERIES, num_gallery), np.float32)
    out = np.empty((_BLOCK_QUERIES, num_gallery), np.float32)
    for start, stop in _query_blocks(query_rows, np.diff(gallery_columns.indptr)):
        rows = stop - start
        # The original's float32 arithmetic: jaccard = 1 - m / (2 - m); A = q_g**2 / max; blend.
        jac, tmp, block = jaccard[:rows], scratch[:rows], out[:rows]
        np.copyto(jac, _min_sums(query_rows, gallery_columns, start, stop), casting="same_kind")
        np.subtract(np.float32(2.0), jac, out=tmp)
        np.divide(jac, tmp, out=jac)
        np.subtract(np.float32(1.0), jac, out=jac)
        np.square(q_g_rows(start, stop), out=tmp, casting="same_kind")
        tmp /= column_max[start:stop, None]
        tmp *= np.float32(lambda_value)
        np.multiply(jac, np.float32(1.0 - lambda_value), out=block)
        block += tmp
        yield start, block


def _final_distance_torch(
    weights: sp.csr_matrix, q_g: torch.Tensor, column_max: np.ndarray, lambda_value: float
) -> np.ndarray:
    """:func:`_final_distance` on the GPU holding ``q_g`` (a tensor there); same result, numpy."""
    device = q_g.device
    num_query, num_gallery = q_g.shape
    gallery = weights[num_query:].tocoo()
    gallery_point = torch.from_numpy(gallery.row.astype(np.int64)).to(device)
    gallery_column = torch.from_numpy(gallery.col.astype(np.int64)).to(device)
    gallery_value = to_tensor(gallery.data, device)
    maxima = to_tensor(column_max, device)
    out = torch.empty((num_query, num_gallery), dtype=torch.float32, device=device)
    block = max(1, _GPU_BLOCK_VALUES // max(gallery.nnz, weights.shape[1]))
    for start in range(0, num_query, block):
        stop = min(start + block, num_query)
        query_rows = to_tensor(weights[start:stop].toarray(), device)  # [B, N]
        pair_min = torch.minimum(query_rows[:, gallery_column], gallery_value)  # [B, nnz]
        min_sum = torch.zeros((stop - start, num_gallery), dtype=torch.float32, device=device)
        min_sum.index_add_(1, gallery_point, pair_min)
        jaccard = 1.0 - min_sum / (2.0 - min_sum)
        original = q_g[start:stop].square() / maxima[start:stop, None]
        out[start:stop] = jaccard * (1.0 - lambda_value) + original * lambda_value
    return out.cpu().numpy()


def _query_blocks(query_rows: sp.csr_matrix, column_counts: np.ndarray) -> list[tuple[int, int]]:
    """Ranges of query rows with at most _BLOCK_QUERIES rows and, unless a single row, _BLOCK_PAIRS pairs."""
    num_query = query_rows.shape[0]
    entry_rows = np.repeat(np.arange(num_query), np.diff(query_rows.indptr))
    pairs_per_row = np.bincount(entry_rows, weights=column_counts[query_rows.indices], minlength=num_query)
    ranges, start, pairs = [], 0, 0
    for row, row_pairs in enumerate(pairs_per_row.tolist()):
        if row > start and (row - start == _BLOCK_QUERIES or pairs + row_pairs > _BLOCK_PAIRS):
            ranges.append((start, row))
            start, pairs = row, 0
        pairs += row_pairs
    ranges.append((start, len(pairs_per_row)))
    return ranges


def _min_sums(query_rows: sp.csr_matrix, gallery_columns: sp.csc_matrix, start: int, stop: int) -> np.ndarray:
    """[stop - start, Ng] float64: sum_k min(V[q, k], V[Nq + g, k]) for queries q = start..stop-1."""
    first, last = query_rows.indptr[start], query_rows.indptr[stop]
    columns, values = query_rows.indices[first:last], query_rows.data[first:last]
    rows = np.repeat(np.arange(stop - start), np.diff(query_rows.indptr[start : stop + 1]))
    counts = np.diff(gallery_columns.indptr)[columns]
    # Each non-zero (q, k) meets the gallery non-zeros of column k: a run of `counts` pairs.
    run_offset = np.repeat(gallery_columns.indptr[columns] - (np.cumsum(counts) - counts), counts)
    positions = np.arange(counts.sum()) + run_offset
    gallery = gallery_columns.indices[positions]
    pair_min = np.minimum(np.repeat(values, counts), gallery_columns.data[positions])
    num_gallery = gallery_columns.shape[0]
    flat = np.repeat(rows * num_gallery, counts) + gallery
    return np.bincount(flat, weights=pair_min, minlength=(stop - start) * num_gallery).reshape(stop - start, -1)
