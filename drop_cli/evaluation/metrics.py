"""Ranking metrics under the Market-1501 protocol: CMC, mAP and mINP.

A query's metrics depend only on the rank of each of its valid matches in its filtered ranking
(the gallery images kept by :func:`~drop_cli.evaluation.protocol.kept_in_ranking`, ordered by
distance, ties in gallery order): the rank of a match is one plus the number of kept images before
it. The usual evaluators sort every row to get these ranks (O(Ng log Ng) per query, most of their
time). Here the kept distances of a row are counted into equal-width bins between the row's
smallest distance and its largest match distance (one histogram, O(Ng)): every image of an earlier
bin comes before the match, and only the few images that share a bin with a match are sorted
exactly (by distance, then gallery index). The result is exactly that of a stable sort.

Queries are processed a few at a time (about 2**17 query-gallery pairs) with work arrays allocated
once: small enough to stay in the CPU caches, and no large temporary is allocated again for every
chunk (fresh memory is slow to fault in on some machines). :func:`evaluate_rank_chunked` asks the
caller for the distances of one chunk of queries at a time, so the full distance matrix never has
to exist: galleries of any size can be evaluated in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import DropError
from .protocol import kept_in_ranking

# Query-gallery pairs per block of work: measured fastest on a 2-core CPU (about 2 MB of work arrays).
_WORK_PAIRS = 2**17
# Query-gallery pairs per call of the caller's distance function by default (16 MB of float32).
_CALL_PAIRS = 2**22


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> dict:
    """CMC, mAP and mINP of a query-gallery distance matrix (Market-1501 protocol, see protocol.py).

    Args:
        distmat: [Nq, Ng] distances, smaller is more similar; finite, any real dtype.
        q_pids: [Nq] query identities.
        g_pids: [Ng] gallery identities; -1 is junk (ignored), 0 distractors (kept).
        q_camids: [Nq] query cameras.
        g_camids: [Ng] gallery cameras.
        max_rank: length of the returned CMC curve.

    Returns:
        ``cmc``: [max_rank] float array, ``cmc[k]`` the fraction of valid queries whose first valid
        match is within the top k + 1; ``mAP``: mean average precision; ``mINP``: mean inverse
        negative penalty (Ye et al., TPAMI 2021): per query, the number of valid matches divided by
        the rank of the last one; ``num_valid_queries``: queries with at least one valid match (the
        others are left out of every metric); ``ap``: [Nq] each query's average precision (NaN for a
        query without a valid match).

    Raises:
        ValueError: inconsistent shapes or arguments (a caller's contract).
        DropError: non-finite distances, or no query with a valid match (a problem of the data).
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"the distance matrix must be 2-D [queries, gallery], got shape {distmat.shape}.")
    return evaluate_rank_chunked(
        lambda start, stop: distmat[start:stop], q_pids, g_pids, q_camids, g_camids, max_rank=max_rank
    )


def evaluate_rank_chunked(
    query_distances: Callable[[int, int], np.ndarray],
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> dict:
    """:func:`evaluate_rank` in bounded memory, asking for the distances one chunk of queries at a time.

    ``query_distances(start, stop)`` returns the [stop - start, Ng] distances of queries
    ``start .. stop - 1`` to the whole gallery; it is called once per chunk, in order. Memory is
    that of one chunk of distances plus a few MB of work arrays, whatever the gallery size, and the
    metrics are exact (not a top-k approximation). For example, with part embeddings::

        evaluate_rank_chunked(
            lambda start, stop: part_distance(q_emb[start:stop], q_vis[start:stop], g_emb, g_vis),
            q_pids, g_pids, q_camids, g_camids)

    Args:
        query_distances: callable (start, stop) -> [stop - start, Ng] finite distances.
        q_pids: [Nq] query identities.
        g_pids: [Ng] gallery identities; -1 is junk (ignored), 0 distractors (kept).
        q_camids: [Nq] query cameras.
        g_camids: [Ng] gallery cameras.
        max_rank: length of the returned CMC curve.
        chunk_size: queries per call; by default about 4 million query-gallery pairs per chunk.

    Returns:
        The dictionary of :func:`evaluate_rank`.

    Raises:
        ValueError: inconsistent shapes or arguments (a caller's contract).
        DropError: non-finite distances, or no query with a valid match (a problem of the data).
    """
    return _rank_totals(query_distances, q_pids, g_pids, q_camids, g_camids, max_rank, chunk_size).result()


def average_precision(
    distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray
) -> np.ndarray:
    """[Nq] float64 average precision of every query under the protocol, NaN for a query without a
    valid match (what :func:`evaluate_rank` averages into mAP; no error when no query has a match)."""
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"the distance matrix must be 2-D [queries, gallery], got shape {distmat.shape}.")
    return _rank_totals(lambda start, stop: distmat[start:stop], q_pids, g_pids, q_camids, g_camids).ap


def _rank_totals(
    query_distances: Callable[[int, int], np.ndarray],
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> _Totals:
    """The ranks of every query's valid matches, chunk by chunk, summed into a ``_Totals``."""
    ranking = RankAccumulator(q_pids, g_pids, q_camids, g_camids, max_rank)
    if chunk_size is None:
        chunk_size = max(1, _CALL_PAIRS // max(ranking.num_gallery, 1))
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    for start in range(0, ranking.num_query, chunk_size):
        stop = min(start + chunk_size, ranking.num_query)
        ranking.add(start, _distance_chunk(query_distances(start, stop), start, stop, ranking.num_gallery))
    return ranking.totals


class RankAccumulator:
    """The metrics of :func:`evaluate_rank`, fed the distances of consecutive blocks of queries.

    For a producer that makes several matrices' rows block by block (the ablation grid, the
    re-ranking streamed from embeddings): one accumulator per matrix, each holding a few MB.

        ranking = RankAccumulator(q_pids, g_pids, q_camids, g_camids)
        for start, block in blocks:  # block: [rows, Ng] distances of queries start..start+rows-1
            ranking.add(start, block)
        metrics = ranking.result()
    """

    def __init__(
        self, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray, max_rank: int = 50
    ):
        self.q_pids, self.q_camids = _labels(q_pids, q_camids, "query")
        self.g_pids, self.g_camids = _labels(g_pids, g_camids, "gallery")
        if not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
            raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}.")
        self.num_query, self.num_gallery = len(self.q_pids), len(self.g_pids)
        self.work_rows = max(1, _WORK_PAIRS // max(self.num_gallery, 1))
        self.work = _Workspace.allocate(self.work_rows, self.num_gallery)
        self.by_pid = _GalleryByPid(self.g_pids)
        self.totals = _Totals(max_rank, self.num_query)

    def add(self, start: int, distances: np.ndarray) -> None:
        """Add the [rows, Ng] distances of queries ``start .. start + rows - 1``."""
        stop = start + len(distances)
        if not 0 <= start <= stop <= self.num_query:
            raise ValueError(f"queries {start}..{stop - 1} are outside the {self.num_query} queries.")
        dist = _distance_chunk(distances, start, stop, self.num_gallery)
        for first in range(start, stop, self.work_rows):
            last = min(first + self.work_rows, stop)
            rows, ranks = _match_ranks(
                dist[first - start : last - start],
                self.q_pids[first:last],
                self.q_camids[first:last],
                self.g_pids,
                self.g_camids,
                self.by_pid,
                self.work,
            )
            self.totals.add(rows + first, ranks)

    def result(self) -> dict:
        """The dictionary of :func:`evaluate_rank` over the queries added."""
        return self.totals.result()


def _labels(pids: np.ndarray, camids: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Identity and camera arrays of one side as 1-D int64, checked to be the same length."""
    pids, camids = np.asarray(pids), np.asarray(camids)
    if pids.ndim != 1 or camids.shape != pids.shape:
        raise ValueError(
            f"{side} pids and camids must be 1-D arrays of one length, got shapes {pids.shape} and {camids.shape}."
        )
    for name, values in (("pids", pids), ("camids", camids)):
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{side} {name} must be integers, got dtype {values.dtype}.")
    return pids.astype(np.int64, copy=False), camids.astype(np.int64, copy=False)


def _distance_chunk(dist: np.ndarray, start: int, stop: int, num_gallery: int) -> np.ndarray:
    """The distances of queries start..stop-1 as a float array, checked for shape and finiteness."""
    dist = np.asarray(dist)
    if dist.shape != (stop - start, num_gallery):
        raise ValueError(
            f"distances of queries {start}..{stop - 1} have shape {dist.shape}, expected {(stop - start, num_gallery)} "
            "([queries, gallery], matching the pid and camid arrays)."
        )
    if not np.issubdtype(dist.dtype, np.floating):
        dist = dist.astype(np.float64)
    if dist.size and not (np.isfinite(dist.min()) and np.isfinite(dist.max())):
        raise DropError(
            "the distance matrix has NaN or infinite values.",
            hint="Use a large finite distance for pairs that cannot match.",
        )
    return dist


@dataclass
class _Workspace:
    """Work arrays for one chunk of queries, [rows, Ng] each, reused from chunk to chunk."""

    kept: np.ndarray  # bool: the protocol's mask
    flags: np.ndarray  # bool: scratch
    scaled: np.ndarray  # float32: distances mapped to [0, bins)
    bins: np.ndarray  # int64: histogram bin of each pair, offset by row

    @classmethod
    def allocate(cls, rows: int, num_gallery: int) -> _Workspace:
        shape = (rows, num_gallery)
        return cls(np.empty(shape, bool), np.empty(shape, bool), np.empty(shape, np.float32), np.empty(shape, np.int64))


class _GalleryByPid:
    """The gallery indices grouped by identity, to list a query's same-identity images without a pass."""

    def __init__(self, g_pids: np.ndarray):
        self.order = np.argsort(g_pids, kind="stable")
        self.sorted_pids = g_pids[self.order]

    def pairs(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, gallery index) of every gallery image with the pid of query row ``row``, row-major."""
        first = np.searchsorted(self.sorted_pids, q_pids, side="left")
        counts = np.searchsorted(self.sorted_pids, q_pids, side="right") - first
        rows = np.repeat(np.arange(len(q_pids)), counts)
        # Position in the pid-sorted gallery: the pair's index in the output, shifted by its run's offset.
        positions = np.arange(counts.sum()) + np.repeat(first - (np.cumsum(counts) - counts), counts)
        return rows, self.order[positions]


def _match_ranks(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    by_pid: _GalleryByPid,
    work: _Workspace,
) -> tuple[np.ndarray, np.ndarray]:
    """The rank of every valid match in its query's filtered ranking (histogram method, see module doc).

    Args:
        dist: [B, Ng] distances of a chunk of queries.
        q_pids, q_camids: [B] labels of these queries.
        g_pids, g_camids: [Ng] gallery labels.
        by_pid: the gallery grouped by pid.
        work: work arrays with at least B rows.

    Returns:
        ``rows`` [T] (query row in the chunk) and ``ranks`` [T] (1-based rank among kept images)
        of the T valid matches, sorted by row then rank.
    """
    rows, num_gallery = dist.shape
    kept = kept_in_ranking(q_pids[:, None], q_camids[:, None], g_pids, g_camids, out=work.kept[:rows])
    match_rows, match_cols = by_pid.pairs(q_pids)
    valid = kept[match_rows, match_cols]
    match_rows, match_cols = match_rows[valid], match_cols[valid]
    if match_rows.size == 0:
        return match_rows, match_rows

    # Bins 0 .. num_bins - 1 span each row from its smallest distance to its largest match distance;
    # bin num_bins holds what cannot come before any match: removed images and farther ones.
    # At most 2**20 bins: float32 rounding then stays well below one bin, so no match reaches the last bin.
    num_bins = min(max(16, num_gallery // 2), 2**20)
    low = dist.min(axis=1)
    high = low.copy()
    np.maximum.at(high, match_rows, dist[match_rows, match_cols])
    span = (high - low).astype(np.float64)
    scale = np.divide(num_bins - 1, span, out=np.zeros_like(span), where=span > 0)
    scale = np.minimum(scale, np.finfo(np.float32).max).astype(np.float32)  # keeps 0 * scale finite
    scaled = work.scaled[:rows]
    np.subtract(dist, low[:, None], out=scaled, casting="same_kind")
    scaled *= scale[:, None]
    np.minimum(scaled, num_bins, out=scaled)
    # Binning is monotone (rounding is), so a pair in an earlier bin is never farther than a later one.
    bins = work.bins[:rows]
    np.copyto(bins, scaled, casting="unsafe")
    np.copyto(bins, num_bins, where=np.logical_not(kept, out=work.flags[:rows]))
    bins += (np.arange(rows) * (num_bins + 1))[:, None]
    counts = np.bincount(bins.ravel(), minlength=rows * (num_bins + 1)).reshape(rows, num_bins + 1)
    kept_before_bin = (np.cumsum(counts, axis=1) - counts).ravel()

    # Exact order inside the bins that hold a match: by distance, ties in gallery order (stable).
    holds_match = np.zeros(rows * (num_bins + 1), bool)
    holds_match[bins[match_rows, match_cols]] = True
    shared = np.flatnonzero(np.take(holds_match, bins, out=work.flags[:rows], mode="clip"))  # 1-D: much faster
    shared_rows, shared_cols = np.divmod(shared, num_gallery)
    shared_bins = bins.ravel()[shared]
    order = np.lexsort((dist[shared_rows, shared_cols], shared_bins))
    shared_rows, shared_cols, shared_bins = shared_rows[order], shared_cols[order], shared_bins[order]
    kept_before = kept_before_bin[shared_bins] + _position_in_runs(shared_bins)

    is_match = work.flags[:rows]
    is_match.fill(False)
    is_match[match_rows, match_cols] = True
    is_match = is_match[shared_rows, shared_cols]
    return shared_rows[is_match], kept_before[is_match] + 1


def _position_in_runs(keys: np.ndarray) -> np.ndarray:
    """[N] 0-based position of each element in its run of equal consecutive ``keys`` [N]."""
    index = np.arange(len(keys))
    starts = np.ones(len(keys), bool)
    starts[1:] = keys[1:] != keys[:-1]
    return index - np.maximum.accumulate(np.where(starts, index, 0))


class _Totals:
    """Running sums of the per-query metrics over the chunks, and each query's AP."""

    def __init__(self, max_rank: int, num_query: int):
        self.max_rank = max_rank
        self.first_rank_counts = np.zeros(max_rank + 2, np.int64)  # index max_rank + 1: beyond the curve
        self.ap = np.full(num_query, np.nan)  # NaN until the query's matches are seen (none: NaN stays)
        self.inp_sum = 0.0
        self.num_valid = 0

    def add(self, rows: np.ndarray, ranks: np.ndarray) -> None:
        """Add some queries, given the ``ranks`` [T] of their matches by query index ``rows`` [T] (grouped)."""
        if rows.size == 0:
            return
        hit = _position_in_runs(rows) + 1  # 1-based index of each match among its query's matches
        first = np.flatnonzero(hit == 1)
        last = np.r_[first[1:], len(rows)] - 1
        num_matches = hit[last]
        self.ap[rows[first]] = np.add.reduceat(hit / ranks, first) / num_matches
        self.inp_sum += float(np.sum(num_matches / ranks[last]))
        self.first_rank_counts += np.bincount(np.minimum(ranks[first], self.max_rank + 1), minlength=self.max_rank + 2)
        self.num_valid += len(first)

    def result(self) -> dict:
        if self.num_valid == 0:
            raise DropError(
                "no query has a valid match in the gallery, so the metrics are undefined.",
                hint="Check that query and gallery share identities (pids) seen by different cameras.",
            )
        cmc = np.cumsum(self.first_rank_counts[1 : self.max_rank + 1]) / self.num_valid
        return {
            "cmc": cmc,
            "mAP": float(np.nansum(self.ap)) / self.num_valid,
            "ap": self.ap,
            "mINP": self.inp_sum / self.num_valid,
            "num_valid_queries": self.num_valid,
        }
