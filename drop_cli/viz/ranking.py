"""Ranking grids: one row per query, the query then its top-k gallery images under the evaluation protocol.

The grid shows what the metrics score: a query's ranking is its row of the distance matrix restricted
to the gallery images :func:`~drop_cli.evaluation.kept_in_ranking` keeps (same identity and camera,
and junk, are skipped), ordered by distance with ties in gallery order, and the per-query average
precision is computed the same way (its mean over the queries with a valid match is the mAP of
:func:`~drop_cli.evaluation.evaluate_rank`).

Layout for ``r`` queries, ``k`` ranks and tiles of ``tile_height`` x ``tile_width`` (constants here
and in `canvas`): ``cell_w = tile_width + 2 * BORDER``, ``cell_h = tile_height + 2 * BORDER +
2 * CAPTION_H + MARKS_H``; width ``W = max(MIN_WIDTH, 2 * MARGIN + GUTTER + cell_w + QUERY_GAP +
k * cell_w + (k - 1) * GAP)``; height ``header_height(2, K + 3, W) + COLUMN_HEAD_H + r * cell_h +
(r - 1) * ROW_GAP + MARGIN`` (legend: K parts, query, same id, different id).

`draw_search` draws the same grid for `drop search`, where the gallery has no identities: neutral
frames, and the legend K parts, query, result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DropError
from ..evaluation.distance import UNSHARED_DISTANCE
from ..evaluation.metrics import average_precision
from ..evaluation.protocol import kept_in_ranking
from . import palette
from .canvas import CAPTION_H, CAPTION_SIZE, MARGIN, MARKS_H, Canvas, header_height
from .tiles import read_images, tile_for

BORDER = 3
GAP = 5
QUERY_GAP = 14
ROW_GAP = 10
GUTTER = 40
COLUMN_HEAD_H = 16
MIN_WIDTH = 640


@dataclass(frozen=True)
class ImageSet:
    """The images of one side of a ranking.

    Attributes:
        paths: N image paths relative to the dataset folder.
        pids: [N] integer identities.
        camids: [N] integer cameras.
        visibility: [N, K] part visibility in [0, 1] (a part counts as visible above 0.5), or None.
        parts: the K part names of the visibility columns.
    """

    paths: Sequence[str]
    pids: np.ndarray
    camids: np.ndarray
    visibility: np.ndarray | None = None
    parts: tuple[str, ...] = ()

    @classmethod
    def from_features(cls, split, names: Sequence[str]) -> ImageSet:
        """From one split of a features file (``.paths``, ``.pids``, ``.camids``, ``.visibility`` [N, M])
        and its M row names; the global and foreground rows (always visible) are left out."""
        keep = [i for i, name in enumerate(names) if name not in ("global", "foreground")]
        return cls(
            list(split.paths),
            np.asarray(split.pids),
            np.asarray(split.camids),
            np.asarray(split.visibility)[:, keep],
            tuple(names[i] for i in keep),
        )


def _check(distmat: np.ndarray, query: ImageSet, gallery: ImageSet) -> np.ndarray:
    distmat = np.asarray(distmat)
    expected = (len(query.paths), len(gallery.paths))
    if distmat.shape != expected:
        raise DropError(f"the distance matrix has shape {distmat.shape}, expected {expected} [queries, gallery].")
    for side, images in (("query", query), ("gallery", gallery)):
        n = len(images.paths)
        if np.shape(images.pids) != (n,) or np.shape(images.camids) != (n,):
            raise DropError(f"{side}: pids and camids must be [N] arrays for the {n} paths.")
        if images.visibility is not None and np.shape(images.visibility) != (n, len(images.parts)):
            raise DropError(
                f"{side}: visibility has shape {np.shape(images.visibility)}, expected "
                f"{(n, len(images.parts))} [images, parts]."
            )
    if query.parts != gallery.parts:
        raise DropError(f"query and gallery have different parts: {query.parts} and {gallery.parts}.")
    return distmat


def pick_queries(
    q_pids: np.ndarray,
    ap: np.ndarray | None = None,
    *,
    queries: Sequence[int] | None = None,
    query_ids: Sequence[int] | None = None,
    worst: int | None = None,
    count: int = 10,
) -> np.ndarray:
    """The query indices to draw, by one of: ``queries`` (indices), ``query_ids`` (every query of these
    identities, in the order given), ``worst`` (that many lowest-AP queries, lowest first, ties by
    index) or, when none is given, ``count`` queries evenly spread over the query set.

    Args:
        q_pids: [Nq] query identities.
        ap: [Nq] per-query AP (`average_precision`, NaN without a valid match); needed for ``worst``.

    Raises:
        DropError: more than one way given, an index out of range, an unknown query id, or no
        query with a valid match for ``worst``.
    """
    given = [
        name for name, value in (("queries", queries), ("query_ids", query_ids), ("worst", worst)) if value is not None
    ]
    if len(given) > 1:
        raise DropError(f"choose queries one way, got {' and '.join(given)}.")
    num_query = len(q_pids)
    if queries is not None:
        picked = np.asarray(queries, dtype=np.int64).reshape(-1)
        bad = picked[(picked < 0) | (picked >= num_query)]
        if bad.size:
            raise DropError(
                f"query index {bad[0]} is out of range: there are {num_query} queries (0..{num_query - 1})."
            )
    elif query_ids is not None:
        known = np.unique(q_pids)
        unknown = np.setdiff1d(np.asarray(query_ids, dtype=np.int64), known)
        if unknown.size:
            raise DropError(
                f"unknown query id {unknown[0]}.",
                hint=f"The {len(known)} query ids range from {known.min()} to {known.max()}, e.g. "
                f"{', '.join(map(str, known[:5].tolist()))}.",
            )
        picked = np.concatenate([np.flatnonzero(q_pids == pid) for pid in query_ids] + [np.empty(0, np.int64)])
    elif worst is not None:
        if ap is None:
            raise DropError("choosing the worst queries needs their average precision.")
        valid = np.flatnonzero(np.isfinite(ap))
        if worst < 1 or valid.size == 0:
            raise DropError(
                "no query to show: "
                + (
                    "no query has a valid match in the gallery."
                    if worst >= 1
                    else f"worst must be at least 1, got {worst}."
                )
            )
        picked = valid[np.argsort(ap[valid], kind="stable")[:worst]]
    else:
        picked = np.unique(np.linspace(0, num_query - 1, min(count, num_query)).round().astype(np.int64))
    if picked.size == 0:
        raise DropError("no query to show: the selection is empty.")
    return picked


def top_k(distmat: np.ndarray, query: ImageSet, gallery: ImageSet, picked: np.ndarray, k: int) -> list[np.ndarray]:
    """For each picked query, the gallery indices of its first ``k`` kept images (fewer if fewer are kept)."""
    rows = distmat[picked]
    kept = kept_in_ranking(
        np.asarray(query.pids)[picked, None],
        np.asarray(query.camids)[picked, None],
        np.asarray(gallery.pids)[None],
        np.asarray(gallery.camids)[None],
    )
    order = np.argsort(np.where(kept, rows, np.inf), axis=1, kind="stable")[:, :k]
    return [o[: min(k, int(n))] for o, n in zip(order, kept.sum(1))]


def draw_ranking(
    out: str | Path,
    folder: str | Path,
    query: ImageSet,
    gallery: ImageSet,
    distmat: np.ndarray,
    *,
    queries: Sequence[int] | None = None,
    query_ids: Sequence[int] | None = None,
    worst: int | None = None,
    count: int = 10,
    k: int = 10,
    tile_height: int = 128,
    tile_width: int | None = None,
    title: str | None = None,
) -> Path:
    """Draw the ranking grid: per row a query (dark frame) and its top-``k`` gallery images, framed green
    (same identity) or red (different identity), with the distance, identity and camera under each
    and one square per part, filled where the part is visible in both images.

    Args:
        out: the PNG to write.
        folder: the dataset folder the query and gallery paths are relative to.
        query, gallery: the two sides (`ImageSet`, e.g. `ImageSet.from_features`).
        distmat: [Nq, Ng] distances (re-ranked or not: the caller's choice).
        queries, query_ids, worst, count: which queries (see `pick_queries`).
        k: gallery images per row.
        tile_height, tile_width: image cell size in px (default width: half the height).
        title: the picture's title (default: what is shown).

    Raises:
        DropError: inconsistent shapes, a bad query selection, or most images missing under ``folder``.
    """
    distmat = _check(distmat, query, gallery)
    if k < 1 or tile_height < 16:
        raise DropError(f"need k >= 1 and tile_height >= 16, got {k} and {tile_height}.")
    q_pids, q_camids = np.asarray(query.pids), np.asarray(query.camids)

    def ap_of(rows) -> np.ndarray:
        return average_precision(distmat[rows], q_pids[rows], gallery.pids, q_camids[rows], gallery.camids)

    every_ap = ap_of(slice(None)) if worst is not None else None  # needed only to find the worst queries
    picked = pick_queries(q_pids, every_ap, queries=queries, query_ids=query_ids, worst=worst, count=count)
    picked_ap = every_ap[picked] if every_ap is not None else ap_of(picked)
    ranked = top_k(distmat, query, gallery, picked, k)
    q_visible = None if query.visibility is None else np.asarray(query.visibility) > 0.5
    g_visible = None if gallery.visibility is None else np.asarray(gallery.visibility) > 0.5
    rows = []
    for qi, q_ap, gallery_row in zip(picked, picked_ap, ranked):
        q_pid = query.pids[qi]
        cells = [
            _Cell(
                gallery.paths[gi],
                palette.SAME_ID if gallery.pids[gi] == q_pid else palette.OTHER_ID,
                (_distance_caption(distmat[qi, gi], bool(query.parts)), f"id {gallery.pids[gi]} c{gallery.camids[gi]}"),
                None if q_visible is None else q_visible[qi] & g_visible[gi],
            )
            for gi in gallery_row
        ]
        score = f"AP {100 * q_ap:.1f}%" if np.isfinite(q_ap) else "no valid match"
        query_cell = _Cell(
            query.paths[qi],
            palette.QUERY,
            (f"id {q_pid} c{query.camids[qi]}", score),
            None if q_visible is None else q_visible[qi],
        )
        rows.append((f"#{qi}", query_cell, cells))
    how = (
        "as selected"
        if queries is not None
        else f"ids {', '.join(map(str, query_ids))}"
        if query_ids is not None
        else "lowest AP first"
        if worst is not None
        else "evenly spaced"
    )
    return _draw_rows(
        out,
        folder,
        rows,
        query.parts,
        k,
        tile_height,
        tile_width,
        title or f"Ranking: top {k} of {len(gallery.paths)} for {len(picked)}/{len(query.paths)} queries ({how})",
        [
            "frames: query, same identity, different identity · under each image: distance (query: AP), id, camera",
            ("squares: parts visible in both (query: in it) · " if query.parts else "")
            + "not ranked, as in evaluation: same id and camera, junk",
        ],
        [("query", palette.QUERY), ("same id", palette.SAME_ID), ("different id", palette.OTHER_ID)],
    )


def draw_search(
    out: str | Path,
    queries: Sequence[str],
    results: Sequence[Sequence[tuple[str, float, np.ndarray | None]]],
    *,
    folder: str | Path = "/",
    parts: tuple[str, ...] = (),
    query_visibility: np.ndarray | None = None,
    tile_height: int = 128,
    title: str | None = None,
) -> Path:
    """Draw a search: per row a query and the gallery images it ranks first, without identities (no
    green or red: nothing is known to be right), the distance under each and the parts visible in both.

    Args:
        queries: the query image paths (absolute, or relative to ``folder``).
        results: per query, its ranked (gallery path, distance, parts visible in both [K] or None).
        query_visibility: [Nq, K] visibility of the queries (parts visible above 0.5).
    """
    k = max((len(r) for r in results), default=0)
    if k < 1:
        raise DropError("nothing to draw: the search found no gallery image.")
    rows = [
        (
            f"#{i}",
            _Cell(
                path,
                palette.QUERY,
                (Path(path).name, "query"),
                None if query_visibility is None else query_visibility[i] > 0.5,
            ),
            [
                _Cell(g_path, palette.RESULT, (_distance_caption(d, bool(parts)), Path(g_path).name), shared)
                for g_path, d, shared in ranked
            ],
        )
        for i, (path, ranked) in enumerate(zip(queries, results))
    ]
    return _draw_rows(
        out,
        folder,
        rows,
        parts,
        k,
        tile_height,
        None,
        title or f"Search: the first {k} of the gallery for {len(queries)} queries",
        [
            "under each image: distance, file name"
            + (" · squares: parts visible in both (query: in it)" if parts else ""),
            "frames say nothing of identity: the gallery has none",
        ],
        [("query", palette.QUERY), ("result", palette.RESULT)],
    )


@dataclass(frozen=True)
class _Cell:
    """One tile of a ranking row: the image, its frame colour, two caption lines, the part squares."""

    path: str
    colour: tuple[int, int, int]
    captions: tuple[str, str]
    shown: np.ndarray | None


def _distance_caption(d: float, has_parts: bool) -> str:
    return "no shared" if d >= UNSHARED_DISTANCE and has_parts else f"{d:.3f}"


def _draw_rows(
    out: str | Path,
    folder: str | Path,
    rows: list[tuple[str, _Cell, list[_Cell]]],
    parts: tuple[str, ...],
    k: int,
    tile_height: int,
    tile_width: int | None,
    title: str,
    lines: list[str],
    frames: list[tuple[str, tuple[int, int, int]]],
) -> Path:
    """The grid of ``rows`` (label, query cell, gallery cells), ``k`` columns, with its header."""
    paths = [cell.path for _, query, cells in rows for cell in (query, *cells)]
    pictures = read_images(folder, paths, "ranking images")
    tile_w = tile_width or tile_height // 2
    cell_w, cell_h = tile_w + 2 * BORDER, tile_height + 2 * BORDER + 2 * CAPTION_H + MARKS_H
    width = max(MIN_WIDTH, 2 * MARGIN + GUTTER + cell_w + QUERY_GAP + k * cell_w + (k - 1) * GAP)
    colours = palette.part_colours(parts)[1:]
    legend = [(name, tuple(int(c) for c in colours[i])) for i, name in enumerate(parts)] + frames
    height = header_height(2, len(legend), width) + COLUMN_HEAD_H + len(rows) * cell_h + (len(rows) - 1) * ROW_GAP
    canvas = Canvas(height + MARGIN, width)
    top = canvas.header(title, lines, legend)
    q_left = MARGIN + GUTTER
    g_left = q_left + cell_w + QUERY_GAP
    canvas.text(q_left + cell_w // 2, top, "query", anchor="ma", bold=True)
    for rank in range(k):
        canvas.text(g_left + rank * (cell_w + GAP) + cell_w // 2, top, f"{rank + 1}", anchor="ma", bold=True)
    for row, (label, query, cells) in enumerate(rows):
        y = top + COLUMN_HEAD_H + row * (cell_h + ROW_GAP)
        canvas.text(MARGIN, y + BORDER + tile_height // 2, label, CAPTION_SIZE + 1, bold=True, anchor="lm")
        for left, cell in [(q_left, query), *((g_left + r * (cell_w + GAP), c) for r, c in enumerate(cells))]:
            _cell(
                canvas,
                y,
                left,
                pictures[cell.path],
                tile_height,
                tile_w,
                cell.colour,
                cell.captions,
                cell.shown,
                colours,
            )
    return canvas.save(out)


def _cell(
    canvas: Canvas,
    top: int,
    left: int,
    image: np.ndarray | None,
    tile_height: int,
    tile_width: int,
    colour: tuple[int, int, int],
    captions: tuple[str, str],
    shown: np.ndarray | None,
    colours: np.ndarray,
) -> None:
    """One framed tile with two caption lines and, when ``shown`` [K] is given, the part marks."""
    cell_w = tile_width + 2 * BORDER
    canvas.frame(top, left, tile_height + 2 * BORDER, cell_w, colour, BORDER)
    canvas.paste(tile_for(image, tile_height, tile_width)[0], top + BORDER, left + BORDER)
    if image is None:
        canvas.text(
            left + cell_w // 2,
            top + BORDER + tile_height // 2,
            "missing",
            colour=palette.FLAGGED,
            anchor="mm",
            max_width=tile_width,
        )
    y = top + tile_height + 2 * BORDER + 1
    canvas.text(left, y, captions[0], max_width=cell_w)
    canvas.text(left, y + CAPTION_H, captions[1], colour=palette.MUTED, max_width=cell_w)
    if shown is not None:
        canvas.marks(y + 2 * CAPTION_H, left, cell_w, shown, colours)
