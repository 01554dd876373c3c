"""Scoring embeddings: the distance of one setting and its metrics, or the whole ablation grid, over arrays.

The embeddings are [N, M, D] with rows global, foreground, then the K parts. A distance mode picks
rows and averages their euclidean distances, weighted by visibility (BPBreID's test distance):

    global             row 0
    foreground         row 1
    parts              rows 2.., each weighted by the product of the two images' part visibility
    parts+foreground   rows 1.., the foreground always visible: DROP's test distance

With visibility off, every row has weight 1 (the plain mean); global and foreground never use it.

One setting (:func:`evaluate_setting`) goes through :func:`part_distance` with the mode's rows,
exactly as training's validation does. The ablation grid (:func:`evaluate_grid`) needs many
matrices: query-gallery for every mode and every left-out part, and for re-ranking query-query and
gallery-gallery for every mode. Calling part_distance per matrix would redo each row's product once
per matrix (36 gallery-gallery row products for the 6 re-ranked modes, minutes on a CPU at
Occluded-Duke size). Instead :func:`combined_distances` fills several matrices in one sweep: each
row's distances are computed once per block of images and added into every matrix that uses the
row (with part_distance's own kernels: ``unit_distance_into``, ``weighted_mean_into``). Gallery-gallery matrices
(1.25 GB each at Occluded-Duke size) are filled two at a time, modes that share rows together:
19 row products instead of 36. They are symmetric, as are query-query ones, so only the upper
triangle is computed. That sweep is the CPU path; on a GPU, where part_distance takes a fraction of a
second per matrix, the grid computes each matrix with part_distance itself (:func:`_grid_per_matrix`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..errors import DropError, lookup
from ..parts import FIRST_PART, FOREGROUND, GLOBAL
from ._device import compute_device
from .distance import part_distance, unit_distance_into, weighted_mean_into
from .metrics import evaluate_rank
from .rerank import K1, K2, LAMBDA, check_re_rank_memory, re_rank


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
# Distance matrices filled by one sweep of the grid, in bytes: e.g. two Occluded-Duke gallery-gallery
# matrices (re-ranking then needs about 1.5 GB more), or every query-gallery matrix.
_HELD_BYTES = 3 * 2**30


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


def _metrics(distmat: np.ndarray, query: Split, gallery: Split) -> dict:
    result = evaluate_rank(distmat, query.pids, gallery.pids, query.camids, gallery.camids)
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


def _check_rerank_memory(num_query: int, num_gallery: int, rerank: Rerank) -> None:
    try:
        check_re_rank_memory(num_query, num_gallery, rerank.k1, rerank.k2)
    except DropError as e:
        raise DropError(
            e.message,
            hint="Evaluate without --rerank (that works for any gallery size), or on a machine with more memory.",
        ) from None


# ----------------------------------------------------------------------------- one setting


def _distance(a: Split, b: Split, combo: _Combination, device: str | torch.device | None = None) -> np.ndarray:
    """part_distance over the rows of ``combo``, weighted as it says."""
    rows = _index(combo.rows)
    return part_distance(
        a.embeddings[:, rows],
        _weights(a.visibility, combo.visibility)[:, rows],
        b.embeddings[:, rows],
        _weights(b.visibility, combo.visibility)[:, rows],
        device=device,
    )


def _re_ranked(
    distmat: np.ndarray,
    query: Split,
    gallery: Split,
    combo: _Combination,
    rerank: Rerank,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """``distmat`` (query-gallery under ``combo``) re-ranked with the same distance's query-query and
    gallery-gallery matrices."""
    return re_rank(
        distmat,
        _distance(query, query, combo, device),
        _distance(gallery, gallery, combo, device),
        rerank.k1,
        rerank.k2,
        rerank.lambda_value,
        device=device,
    )


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
    distmat = _distance(query, gallery, combo, device)
    if setting.rerank:
        _check_rerank_memory(len(query.pids), len(gallery.pids), rerank)
        distmat = _re_ranked(distmat, query, gallery, combo, rerank, device)
    return distmat


def evaluate_setting(
    query: Split,
    gallery: Split,
    names: Sequence[str],
    setting: Setting,
    rerank: Rerank = Rerank(),
    device: str | torch.device | None = None,
) -> dict:
    """Metrics of one setting (see :func:`setting_distances`): the setting's fields, rank1, rank5,
    rank10, mAP, mINP (fractions) and valid_queries."""
    return _row(setting, _metrics(setting_distances(query, gallery, names, setting, rerank, device), query, gallery))


# ----------------------------------------------------------------------------- the grid


def combined_distances(
    a_emb: np.ndarray,
    a_weights: np.ndarray,
    b_emb: np.ndarray,
    b_weights: np.ndarray,
    combinations: Sequence[_Combination],
    symmetric: bool = False,
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
        symmetric: ``b`` is ``a``: compute the upper triangle and mirror it.
        out: [Na, Nb] float32 arrays to write the matrices into, one per combination; reusing them
            from call to call saves faulting in fresh memory each time (slow on some machines).

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
        first = start if symmetric else 0  # columns first..: the upper triangle of a symmetric matrix
        shape = (stop - start, num_b - first)
        dist = dist_buffer[: shape[0] * shape[1]].reshape(shape)
        weighted = weighted_buffer[: shape[0] * shape[1]].reshape(shape)
        for index, m in enumerate(rows):
            unit_distance_into(
                np.asarray(a_emb[start:stop, m], np.float32) * np.float32(-2), b_rows[index, first:].T, dist
            )
            users = [
                (c.visibility and m >= FIRST_PART, output) for c, output in zip(combinations, outputs) if m in c.rows
            ]
            if any(weigh for weigh, _ in users):
                np.multiply(dist, a_weights[start:stop, m, None], out=weighted)
                weighted *= b_weights[first:, m]
            for weigh, output in users:
                output[start:stop, first:] += weighted if weigh else dist
        for combo, output in zip(combinations, outputs):
            target = output[start:stop, first:]
            if combo.visibility:
                cols = list(combo.rows)
                weighted_mean_into(target, a_weights[start:stop][:, cols] @ b_weights[first:][:, cols].T, target)
            else:
                target /= np.float32(len(combo.rows))
            if symmetric:
                output[stop:, start:stop] = target[:, stop - start :].T
    return outputs


def _groups(combinations: list[_Combination], matrix_bytes: int) -> list[list[_Combination]]:
    """Consecutive groups of combinations whose matrices fit in _HELD_BYTES together (at least one each)."""
    size = max(1, _HELD_BYTES // max(matrix_bytes, 1))
    return [combinations[i : i + size] for i in range(0, len(combinations), size)]


def evaluate_grid(
    query: Split,
    gallery: Split,
    names: Sequence[str],
    settings: Sequence[Setting],
    rerank: Rerank = Rerank(),
    advance: Callable[[int], None] = lambda n: None,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Metrics of many settings (e.g. :func:`ablation_grid`), each distance matrix computed once.

    Query-gallery matrices serve a setting with and without re-ranking; query-query and
    gallery-gallery matrices are computed only for the settings that re-rank, after checking
    that re-ranking fits in memory.

    Args:
        query, gallery: the two splits, embeddings [N, M, D] with rows ``names``.
        names: the M row names.
        settings: the settings to evaluate.
        rerank: the re-ranking parameters.
        advance: called with 1 after each setting, for a progress bar.
        device: "cpu" (the combined sweep) or a CUDA device (every matrix by part_distance and
            re_rank there); default CUDA when available.

    Returns:
        One result row per setting, in the order of ``settings`` (see :func:`evaluate_setting`).
    """
    by_combination = _by_combination(settings, names)
    if any(s.rerank for s in settings):
        _check_rerank_memory(len(query.pids), len(gallery.pids), rerank)
    device = compute_device(device)
    grid = _grid_sweep if device.type == "cpu" else _grid_per_matrix
    results = grid(query, gallery, by_combination, rerank, advance, device)
    return [_row(s, results[s]) for s in settings]


def _by_combination(settings: Sequence[Setting], names: Sequence[str]) -> dict[_Combination, list[Setting]]:
    """The settings grouped by the distance matrix they need (the same rows and weighting)."""
    groups: dict[_Combination, list[Setting]] = {}
    for setting in settings:
        groups.setdefault(_combination(setting, names), []).append(setting)
    return groups


def _grid_sweep(
    query: Split,
    gallery: Split,
    by_combination: dict[_Combination, list[Setting]],
    rerank: Rerank,
    advance: Callable[[int], None],
    device: torch.device,
) -> dict[Setting, dict]:
    """The grid on the CPU: matrices filled several at a time by :func:`combined_distances`."""
    q = (query.embeddings, _weights(query.visibility, True))  # the weights serve only combinations using them
    g = (gallery.embeddings, _weights(gallery.visibility, True))

    results: dict[Setting, dict] = {}
    to_rerank: dict[_Combination, np.ndarray] = {}  # query-gallery matrices kept for re-ranking
    for group in _groups(list(by_combination), 4 * len(query.pids) * len(gallery.pids)):
        for combo, distmat in zip(group, combined_distances(*q, *g, group)):
            for setting in by_combination[combo]:
                if setting.rerank:
                    to_rerank[combo] = distmat
                else:
                    results[setting] = _metrics(distmat, query, gallery)
                    advance(1)
    if to_rerank:
        combos = sorted(to_rerank, key=lambda c: (-len(c.rows), c.rows))  # neighbours share rows
        query_query = dict(zip(combos, combined_distances(*q, *q, combos, symmetric=True)))
        groups = _groups(combos, 4 * len(gallery.pids) ** 2)
        buffers = [np.empty((len(gallery.pids),) * 2, np.float32) for _ in groups[0]]  # reused by every group
        for group in groups:
            gallery_gallery = combined_distances(*g, *g, group, symmetric=True, out=buffers[: len(group)])
            for combo, matrix in zip(group, gallery_gallery):
                distmat = re_rank(
                    to_rerank.pop(combo),
                    query_query.pop(combo),
                    matrix,
                    rerank.k1,
                    rerank.k2,
                    rerank.lambda_value,
                    device=device,
                )
                metrics = _metrics(distmat, query, gallery)
                for setting in by_combination[combo]:
                    if setting.rerank:
                        results[setting] = metrics
                        advance(1)
    return results


def _grid_per_matrix(
    query: Split,
    gallery: Split,
    by_combination: dict[_Combination, list[Setting]],
    rerank: Rerank,
    advance: Callable[[int], None],
    device: torch.device,
) -> dict[Setting, dict]:
    """The grid on ``device`` (meant for a GPU), one matrix at a time: each combination's query-gallery
    matrix serves its settings with and without re-ranking."""
    results: dict[Setting, dict] = {}
    for combo, settings in by_combination.items():
        distmat = _distance(query, gallery, combo, device)
        re_ranked = None
        for setting in settings:
            matrix = distmat
            if setting.rerank:
                if re_ranked is None:
                    re_ranked = _re_ranked(distmat, query, gallery, combo, rerank, device)
                matrix = re_ranked
            results[setting] = _metrics(matrix, query, gallery)
            advance(1)
    return results
