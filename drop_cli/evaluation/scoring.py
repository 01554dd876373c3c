"""Scoring embeddings: the distance of one setting and its metrics, or the whole ablation grid, over arrays.

The embeddings are [N, M, D] with rows global, foreground, then the K parts. A distance mode picks
rows and averages their euclidean distances, weighted by visibility (BPBreID's test distance):

    global             row 0
    foreground         row 1
    parts              rows 2.., each weighted by the product of the two images' part visibility
    parts+foreground   rows 1.., the foreground always visible: DROP's test distance

With visibility off, every row has weight 1 (the plain mean); global and foreground never use it.

One setting (:func:`evaluate_setting`) goes through :func:`part_distance` with the mode's rows,
exactly as training's validation does, a block of queries at a time, each block ranked as it comes
(`metrics.RankAccumulator`): no [Nq, Ng] matrix is held, so any gallery size evaluates in bounded
memory. Re-ranking streams the same way from the embeddings (:func:`re_ranked_blocks`, which never
holds an [N, N] matrix either). The ablation grid (:func:`evaluate_grid`) needs a query-gallery
matrix for every mode and every left-out part: :func:`combined_distances` fills them together, a
block of queries at a time, each row's distances computed once and added into every matrix that
uses the row (with part_distance's own kernels: ``unit_distance_into``, ``weighted_mean_into``);
on a GPU, where part_distance takes a fraction of a second per matrix, each block of each matrix
comes from part_distance itself. The re-ranked settings then stream one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..errors import DropError, lookup
from ..parts import FIRST_PART, FOREGROUND, GLOBAL
from ._device import compute_device
from .distance import RowSet, combined_distances, part_distance
from .metrics import RankAccumulator
from .rerank import (
    K1,
    K2,
    LAMBDA,
    check_re_rank_embeddings_memory,
    re_rank_embeddings,
    re_ranked_blocks,
    re_ranked_row_sets,
)


class Split(Protocol):
    """What the scoring needs of a set of images: embeddings [N, M, D] (L2-normalised rows global,
    foreground, parts), visibility [N, M], pids [N] and camids [N] (a features file's split, or the
    features training's evaluation extracts)."""

    embeddings: np.ndarray
    visibility: np.ndarray
    pids: np.ndarray
    camids: np.ndarray


DISTANCES = ("global", "foreground", "parts", "parts+foreground")
DEFAULT_DISTANCE = "parts+foreground"
METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")

# Distances per block of queries ranked at a time (all the grid's matrices together): 256 MB of float32.
_BLOCK_VALUES = 2**26


@dataclass(frozen=True)
class Setting:
    """One evaluation: a distance mode, whether visibility weights the parts, re-ranking, a left-out part."""

    distance: str
    visibility: bool
    rerank: bool
    left_out: str | None = None


@dataclass(frozen=True)
class Rerank:
    """k-reciprocal re-ranking parameters (Zhong et al., CVPR 2017; their defaults, ``rerank.K1`` ...)."""

    k1: int = K1
    k2: int = K2
    lambda_value: float = LAMBDA

    def __post_init__(self) -> None:
        for name in ("k1", "k2"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise DropError(f"--{name} must be a positive whole number, got {value!r}.")
        if not 0.0 <= self.lambda_value <= 1.0:
            raise DropError(f"--lambda must be in [0, 1], got {self.lambda_value!r}.")


def make_setting(distance: str, visibility: bool = True, rerank: bool = False, left_out: str | None = None) -> Setting:
    """A checked Setting; visibility is recorded False for global and foreground, which never use it."""
    lookup(dict.fromkeys(DISTANCES), distance, "distance")
    return Setting(distance, visibility and distance in ("parts", "parts+foreground"), rerank, left_out)


def ablation_grid(part_names: Sequence[str]) -> list[Setting]:
    """Every distance mode x visibility on/off (where it applies) x re-ranking off/on, then each part
    left out in turn from the default distance (visibility on, no re-ranking)."""
    modes = sorted(
        {make_setting(d, v) for d in DISTANCES for v in (True, False)},
        key=lambda s: (DISTANCES.index(s.distance), not s.visibility),
    )
    grid = [Setting(s.distance, s.visibility, rerank) for s in modes for rerank in (False, True)]
    return grid + [make_setting(DEFAULT_DISTANCE, True, False, part) for part in part_names]


def row_set(setting: Setting, names: Sequence[str]) -> RowSet:
    """The rows and weighting of ``setting`` for embeddings whose rows are ``names``."""
    num_rows = len(names)
    rows = {
        "global": (GLOBAL,),
        "foreground": (FOREGROUND,),
        "parts": tuple(range(FIRST_PART, num_rows)),
        "parts+foreground": tuple(range(FOREGROUND, num_rows)),
    }[setting.distance]
    if setting.left_out is not None:
        part = lookup({n: i for i, n in enumerate(names) if i >= FIRST_PART}, setting.left_out, "part")
        rows = tuple(r for r in rows if r != part)
    return RowSet(rows, setting.visibility)


def row_weights(visibility: np.ndarray, use: bool) -> np.ndarray:
    """[N, M] float32 row weights: the visibility with global and foreground set to 1, or all ones."""
    weights = np.ones(visibility.shape, np.float32)
    if use:
        weights[:, FIRST_PART:] = visibility[:, FIRST_PART:]
    return weights


def _metrics(result: dict) -> dict:
    """The scoring's metrics of an `evaluate_rank` result."""
    cmc = result["cmc"]
    return {
        "rank1": float(cmc[0]),
        "rank5": float(cmc[4]),
        "rank10": float(cmc[9]),
        "mAP": float(result["mAP"]),
        "mINP": float(result["mINP"]),
        "valid_queries": int(result["num_valid_queries"]),
    }


def _row(setting: Setting, metrics: dict) -> dict:
    return {
        "distance": setting.distance,
        "visibility": setting.visibility,
        "rerank": setting.rerank,
        "left_out": setting.left_out,
        **metrics,
    }


def _ranking(query: Split, gallery: Split) -> RankAccumulator:
    return RankAccumulator(query.pids, gallery.pids, query.camids, gallery.camids)


def _check_rerank_memory(
    query: Split, gallery: Split, rows: int, rerank: Rerank, held_output: bool, distances: int = 1
) -> None:
    """Before any work: re-ranking these splits fits in memory (re_rank_embeddings checks again)."""
    sizes = (len(query.pids), len(gallery.pids), rows, query.embeddings.shape[2])
    check_re_rank_embeddings_memory(*sizes, rerank.k1, rerank.k2, held_output, distances)


def _query_blocks(num_query: int, values_per_query: int) -> list[tuple[int, int]]:
    """Ranges of queries whose distance rows hold about _BLOCK_VALUES values together."""
    block = max(1, _BLOCK_VALUES // max(values_per_query, 1))
    return [(start, min(start + block, num_query)) for start in range(0, num_query, block)]


# ----------------------------------------------------------------------------- one setting


def rows_and_weights(split: Split, combo: RowSet) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings and weights of ``combo``'s rows, as part_distance takes them."""
    rows = combo.index
    return split.embeddings[:, rows], row_weights(split.visibility, combo.visibility)[:, rows]


def _distance(a: Split, b: Split, combo: RowSet, device: str | torch.device | None = None) -> np.ndarray:
    """part_distance over the rows of ``combo``, weighted as it says."""
    return part_distance(*rows_and_weights(a, combo), *rows_and_weights(b, combo), device=device)


def _setting_blocks(
    query: Split,
    gallery: Split,
    combo: RowSet,
    rerank: Rerank | None,
    device: str | torch.device | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(start, [rows, Ng] distances) of consecutive blocks of queries under ``combo``, re-ranked
    with ``rerank`` unless it is None: the [Nq, Ng] matrix is never held."""
    if rerank is not None:
        q, g = rows_and_weights(query, combo), rows_and_weights(gallery, combo)
        yield from re_ranked_blocks(*q, *g, rerank.k1, rerank.k2, rerank.lambda_value, device=device)
        return
    for start, stop in _query_blocks(len(query.pids), len(gallery.pids)):
        yield start, _block_distance(query, gallery, combo, start, stop, device)


def _block_distance(
    query: Split, gallery: Split, combo: RowSet, start: int, stop: int, device: str | torch.device | None
) -> np.ndarray:
    """The distances of queries start..stop-1 to the gallery under ``combo``."""
    emb, weights = rows_and_weights(query, combo)
    return part_distance(emb[start:stop], weights[start:stop], *rows_and_weights(gallery, combo), device=device)


def setting_distances(
    query: Split,
    gallery: Split,
    names: Sequence[str],
    setting: Setting,
    rerank: Rerank = Rerank(),
    device: str | torch.device | None = None,
) -> np.ndarray:
    """The [Nq, Ng] distances of one setting: part_distance over the mode's rows (re-ranked when asked for).

    Args:
        query, gallery: the two splits, embeddings [N, M, D] with rows ``names``.
        names: the M row names (global, foreground, parts).
        setting: from :func:`make_setting`.
        rerank: the re-ranking parameters (used when ``setting.rerank``).
        device: where to compute ("cpu" or a CUDA device; default CUDA when available).
    """
    combo = row_set(setting, names)
    if not setting.rerank:
        return _distance(query, gallery, combo, device)
    q, g = rows_and_weights(query, combo), rows_and_weights(gallery, combo)
    return re_rank_embeddings(*q, *g, rerank.k1, rerank.k2, rerank.lambda_value, device=device)


def evaluate_setting(
    query: Split,
    gallery: Split,
    names: Sequence[str],
    setting: Setting,
    rerank: Rerank = Rerank(),
    device: str | torch.device | None = None,
) -> dict:
    """Metrics of one setting (the distances of :func:`setting_distances`, ranked block by block of
    queries without holding the matrix): the setting's fields, rank1, rank5, rank10, mAP, mINP
    (fractions) and valid_queries."""
    combo = row_set(setting, names)
    if setting.rerank:
        _check_rerank_memory(query, gallery, len(combo.rows), rerank, held_output=False)
    ranking = _ranking(query, gallery)
    for start, block in _setting_blocks(query, gallery, combo, rerank if setting.rerank else None, device):
        ranking.add(start, block)
    return _row(setting, _metrics(ranking.result()))


# ----------------------------------------------------------------------------- the grid


def evaluate_grid(
    query: Split,
    gallery: Split,
    names: Sequence[str],
    settings: Sequence[Setting],
    rerank: Rerank = Rerank(),
    advance: Callable[[int], None] = lambda n: None,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Metrics of many settings (e.g. :func:`ablation_grid`), each distance matrix computed once and
    ranked block by block of queries (no [Nq, Ng] matrix is held).

    The query-gallery matrices of the settings without re-ranking are filled together, a block of
    queries at a time; each re-ranked setting then streams :func:`re_ranked_blocks` (after checking
    that re-ranking fits in memory).

    Args:
        query, gallery: the two splits, embeddings [N, M, D] with rows ``names``.
        names: the M row names.
        settings: the settings to evaluate.
        rerank: the re-ranking parameters.
        advance: called with the number of settings finished, for a progress bar.
        device: "cpu" (the combined sweep) or a CUDA device (each matrix by part_distance there);
            default CUDA when available.

    Returns:
        One result row per setting, in the order of ``settings`` (see :func:`evaluate_setting`).
    """
    by_combination = _by_combination(settings, names)
    re_ranked = [c for c, group in by_combination.items() if any(s.rerank for s in group)]
    if re_ranked:
        rows = max(len(c.rows) for c in re_ranked)
        _check_rerank_memory(query, gallery, rows, rerank, held_output=False, distances=len(re_ranked))
    device = compute_device(device)
    plain = [c for c, group in by_combination.items() if any(not s.rerank for s in group)]
    results: dict[Setting, dict] = {}
    for combo, metrics in zip(plain, _plain_metrics(query, gallery, plain, device, sweep=device.type == "cpu")):
        finished = [s for s in by_combination[combo] if not s.rerank]
        results.update(dict.fromkeys(finished, metrics))
        advance(len(finished))
    if re_ranked:  # together: each embedding row's products once in the neighbour search
        rankings = [_ranking(query, gallery) for _ in re_ranked]
        q = (query.embeddings, row_weights(query.visibility, True))
        g = (gallery.embeddings, row_weights(gallery.visibility, True))
        blocks = re_ranked_row_sets(*q, *g, re_ranked, rerank.k1, rerank.k2, rerank.lambda_value, device=device)
        for index, start, block in blocks:
            rankings[index].add(start, block)
            if start + len(block) == len(query.pids):  # that row set is done
                finished = [s for s in by_combination[re_ranked[index]] if s.rerank]
                results.update(dict.fromkeys(finished, _metrics(rankings[index].result())))
                advance(len(finished))
    return [_row(s, results[s]) for s in settings]


def _by_combination(settings: Sequence[Setting], names: Sequence[str]) -> dict[RowSet, list[Setting]]:
    """The settings grouped by the distance matrix they need (the same rows and weighting)."""
    groups: dict[RowSet, list[Setting]] = {}
    for setting in settings:
        groups.setdefault(row_set(setting, names), []).append(setting)
    return groups


def _plain_metrics(query: Split, gallery: Split, combos: list[RowSet], device: torch.device, sweep: bool) -> list[dict]:
    """The metrics of each combination's query-gallery matrix, the matrices made a block of queries at a
    time: with ``sweep`` (the CPU) all together by :func:`combined_distances`, else one by one by
    part_distance on ``device``."""
    rankings = [_ranking(query, gallery) for _ in combos]
    num_gallery = len(gallery.pids)
    q = (query.embeddings, row_weights(query.visibility, True))  # the weights serve only combinations using them
    g = (gallery.embeddings, row_weights(gallery.visibility, True))
    blocks = _query_blocks(len(query.pids), num_gallery * max(len(combos), 1))
    buffers = np.empty((len(combos), blocks[0][1] if blocks else 0, num_gallery), np.float32)
    for start, stop in blocks:
        if sweep:
            out = [buffer[: stop - start] for buffer in buffers]
            matrices = combined_distances(q[0][start:stop], q[1][start:stop], *g, combos, out=out)
        else:
            matrices = [_block_distance(query, gallery, combo, start, stop, device) for combo in combos]
        for ranking, matrix in zip(rankings, matrices):
            ranking.add(start, matrix)
    return [_metrics(ranking.result()) for ranking in rankings]
