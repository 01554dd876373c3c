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
from .distance import part_distance, unit_distance_into, weighted_mean_into
from .metrics import RankAccumulator
from .rerank import K1, K2, LAMBDA, check_re_rank_embeddings_memory, re_rank_embeddings, re_ranked_blocks


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

# Query-gallery pairs per block of combined_distances: two float32 work arrays of 8 MB.
_BLOCK_PAIRS = 2**21
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


@dataclass(frozen=True)
class _Combination:
    """The embedding rows a distance averages, and whether part rows are weighted by visibility."""

    rows: tuple[int, ...]
    visibility: bool


def _combination(setting: Setting, names: Sequence[str]) -> _Combination:
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
    return _Combination(rows, setting.visibility)


def _weights(visibility: np.ndarray, use: bool) -> np.ndarray:
    """[N, M] float32 row weights: the visibility with global and foreground set to 1, or all ones."""
    weights = np.ones(visibility.shape, np.float32)
    if use:
        weights[:, FIRST_PART:] = visibility[:, FIRST_PART:]
    return weights


def _index(rows: tuple[int, ...]) -> slice | list[int]:
    """``rows`` as a slice when consecutive (a view of the embeddings, not a copy), else as a list."""
    if rows == tuple(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return list(rows)


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


def _check_rerank_memory(query: Split, gallery: Split, rows: int, rerank: Rerank, held_output: bool) -> None:
    """Before any work: re-ranking these splits fits in memory (re_rank_embeddings checks again)."""
    dim = query.embeddings.shape[2]
    check_re_rank_embeddings_memory(len(query.pids), len(gallery.pids), rows, dim, rerank.k1, rerank.k2, held_output)


def _query_blocks(num_query: int, values_per_query: int) -> list[tuple[int, int]]:
    """Ranges of queries whose distance rows hold about _BLOCK_VALUES values together."""
    block = max(1, _BLOCK_VALUES // max(values_per_query, 1))
    return [(start, min(start + block, num_query)) for start in range(0, num_query, block)]


# ----------------------------------------------------------------------------- one setting


def _side(split: Split, combo: _Combination) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings and weights of ``combo``'s rows, as part_distance takes them."""
    rows = _index(combo.rows)
    return split.embeddings[:, rows], _weights(split.visibility, combo.visibility)[:, rows]


def _distance(a: Split, b: Split, combo: _Combination, device: str | torch.device | None = None) -> np.ndarray:
    """part_distance over the rows of ``combo``, weighted as it says."""
    return part_distance(*_side(a, combo), *_side(b, combo), device=device)


def _setting_blocks(
    query: Split,
    gallery: Split,
    combo: _Combination,
    rerank: Rerank | None,
    device: str | torch.device | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(start, [rows, Ng] distances) of consecutive blocks of queries under ``combo``, re-ranked
    with ``rerank`` unless it is None: the [Nq, Ng] matrix is never held."""
    if rerank is not None:
        q, g = _side(query, combo), _side(gallery, combo)
        yield from re_ranked_blocks(*q, *g, rerank.k1, rerank.k2, rerank.lambda_value, device=device)
        return
    for start, stop in _query_blocks(len(query.pids), len(gallery.pids)):
        yield start, _block_distance(query, gallery, combo, start, stop, device)


def _block_distance(
    query: Split, gallery: Split, combo: _Combination, start: int, stop: int, device: str | torch.device | None
) -> np.ndarray:
    """The distances of queries start..stop-1 to the gallery under ``combo``."""
    emb, weights = _side(query, combo)
    return part_distance(emb[start:stop], weights[start:stop], *_side(gallery, combo), device=device)


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
    combo = _combination(setting, names)
    if not setting.rerank:
        return _distance(query, gallery, combo, device)
    q, g = _side(query, combo), _side(gallery, combo)
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
    combo = _combination(setting, names)
    if setting.rerank:
        _check_rerank_memory(query, gallery, len(combo.rows), rerank, held_output=False)
    ranking = _ranking(query, gallery)
    for start, block in _setting_blocks(query, gallery, combo, rerank if setting.rerank else None, device):
        ranking.add(start, block)
    return _row(setting, _metrics(ranking.result()))


# ----------------------------------------------------------------------------- the grid


def combined_distances(
    a_emb: np.ndarray,
    a_weights: np.ndarray,
    b_emb: np.ndarray,
    b_weights: np.ndarray,
    combinations: Sequence[_Combination],
    out: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """One [Na, Nb] float32 distance matrix per combination, each row's distances computed once.

    For a combination with rows R: ``d(a, b) = sum_{m in R} w_m ||a_m - b_m|| / sum_{m in R} w_m``
    with ``w_m = a_weights[a, m] * b_weights[b, m]`` when it uses visibility (else 1), and
    :data:`UNSHARED_DISTANCE` where the weights sum to 0: :func:`part_distance` over rows R.

    Args:
        a_emb: [Na, M, D] L2-normalised embeddings (any float dtype).
        a_weights: [Na, M] float32 row weights in [0, 1] (see :func:`_weights`).
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
    b_rows = np.ascontiguousarray(b_emb[:, rows].transpose(1, 0, 2), dtype=np.float32)  # [|rows|, Nb, D]
    block = max(1, _BLOCK_PAIRS // max(num_b, 1))
    dist_buffer, weighted_buffer = np.empty(block * num_b, np.float32), np.empty(block * num_b, np.float32)
    for start in range(0, num_a, block):
        stop = min(start + block, num_a)
        dist = dist_buffer[: (stop - start) * num_b].reshape(stop - start, num_b)
        weighted = weighted_buffer[: (stop - start) * num_b].reshape(stop - start, num_b)
        for index, m in enumerate(rows):
            unit_distance_into(np.asarray(a_emb[start:stop, m], np.float32) * np.float32(-2), b_rows[index].T, dist)
            users = [
                (c.visibility and m >= FIRST_PART, output) for c, output in zip(combinations, outputs) if m in c.rows
            ]
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
    for combo in re_ranked:
        _check_rerank_memory(query, gallery, len(combo.rows), rerank, held_output=False)
    device = compute_device(device)
    plain = [c for c, group in by_combination.items() if any(not s.rerank for s in group)]
    results: dict[Setting, dict] = {}
    for combo, metrics in zip(plain, _plain_metrics(query, gallery, plain, device, sweep=device.type == "cpu")):
        finished = [s for s in by_combination[combo] if not s.rerank]
        results.update(dict.fromkeys(finished, metrics))
        advance(len(finished))
    for combo in re_ranked:
        ranking = _ranking(query, gallery)
        for start, block in _setting_blocks(query, gallery, combo, rerank, device):
            ranking.add(start, block)
        finished = [s for s in by_combination[combo] if s.rerank]
        results.update(dict.fromkeys(finished, _metrics(ranking.result())))
        advance(len(finished))
    return [_row(s, results[s]) for s in settings]


def _by_combination(settings: Sequence[Setting], names: Sequence[str]) -> dict[_Combination, list[Setting]]:
    """The settings grouped by the distance matrix they need (the same rows and weighting)."""
    groups: dict[_Combination, list[Setting]] = {}
    for setting in settings:
        groups.setdefault(_combination(setting, names), []).append(setting)
    return groups


def _plain_metrics(
    query: Split, gallery: Split, combos: list[_Combination], device: torch.device, sweep: bool
) -> list[dict]:
    """The metrics of each combination's query-gallery matrix, the matrices made a block of queries at a
    time: with ``sweep`` (the CPU) all together by :func:`combined_distances`, else one by one by
    part_distance on ``device``."""
    rankings = [_ranking(query, gallery) for _ in combos]
    num_gallery = len(gallery.pids)
    q = (query.embeddings, _weights(query.visibility, True))  # the weights serve only combinations using them
    g = (gallery.embeddings, _weights(gallery.visibility, True))
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
