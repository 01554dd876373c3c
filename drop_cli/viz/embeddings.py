"""Embedding maps: a 2-D projection (t-SNE or PCA) of one embedding row, coloured by identity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DropError, lookup
from .output import save_figure

FIGSIZE = (9.0, 7.0)  # inches; at DPI the picture is 900 x 700 px
DPI = 100
METHODS = {"tsne": "t-SNE", "pca": "PCA"}


def project(points: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """[N, D] points (N >= 2) -> [N, 2] with scikit-learn's t-SNE (perplexity below N / 3, at most 30) or PCA."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(points)
    from sklearn.manifold import TSNE

    perplexity = float(np.clip((len(points) - 1) / 3, 1.0, 30.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def pick_ids(pids: np.ndarray, ids: Sequence[int] | None, num_ids: int, seed: int) -> np.ndarray:
    """The identities to show: ``ids`` as given, or ``num_ids`` drawn with ``seed`` among those with at
    least two samples (distractors, pid 0, and junk, -1, excluded), sorted.

    Raises:
        DropError: an id not in ``pids``, or no identity to draw from.
    """
    values, counts = np.unique(pids, return_counts=True)
    if ids is not None:
        unknown = np.setdiff1d(np.asarray(ids, dtype=np.int64), values)
        if unknown.size:
            raise DropError(
                f"no sample of id {unknown[0]} to show.",
                hint=f"The {len(values)} ids with samples range from {values.min()} to {values.max()}.",
            )
        return np.asarray(ids)
    eligible = values[(counts >= 2) & (values > 0)]
    if eligible.size == 0 or num_ids < 1:
        raise DropError(
            "no identity with two or more samples to show."
            if num_ids >= 1
            else f"the number of ids must be at least 1, got {num_ids}."
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(eligible, size=min(num_ids, eligible.size), replace=False))


def draw_embeddings(
    out: str | Path,
    embeddings: np.ndarray,
    names: Sequence[str],
    pids: np.ndarray,
    *,
    row: str = "global",
    visibility: np.ndarray | None = None,
    ids: Sequence[int] | None = None,
    num_ids: int = 10,
    method: str = "tsne",
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Scatter the 2-D projection of one embedding row of the chosen identities, one colour per identity.

    A part embedding only counts where the part is visible (visibility above 0.5): elsewhere it
    describes no body part. The picture is `FIGSIZE` x `DPI` pixels (900 x 700).

    Args:
        out: the PNG to write.
        embeddings: [N, M, D] embeddings (e.g. global, foreground, parts).
        names: the M row names.
        pids: [N] identities.
        row: which row to project (one of ``names``).
        visibility: [N, M] visibility in [0, 1], or None (every row visible).
        ids, num_ids, seed: which identities (see `pick_ids`); ``seed`` also seeds the projection.
        method: "tsne" or "pca".
        title: the picture's title (default: what is shown).

    Raises:
        DropError: inconsistent shapes, an unknown row, method or id, or fewer than two samples.
    """
    embeddings, pids = np.asarray(embeddings), np.asarray(pids)
    if embeddings.ndim != 3 or embeddings.shape[:2] != (len(pids), len(names)):
        raise DropError(
            f"embeddings must be [N, M, D] for {len(pids)} ids and {len(names)} rows, got {embeddings.shape}."
        )
    m = lookup({name: i for i, name in enumerate(names)}, row, "embedding row")
    label = lookup(METHODS, method, "projection")
    keep = np.ones(len(pids), bool) if visibility is None else np.asarray(visibility)[:, m] > 0.5
    if not keep.any():
        raise DropError(f"no image has the {row!r} row visible.")
    shown_ids = pick_ids(pids[keep], ids, num_ids, seed)
    keep &= np.isin(pids, shown_ids)
    if keep.sum() < 2:
        raise DropError(f"only {keep.sum()} sample(s) of {row!r} to project; at least two are needed.")
    xy = project(embeddings[keep, m].astype(np.float32), method, seed)
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["tab20" if len(shown_ids) > 10 else "tab10"]
    markers = "os^Dv<>Ph*"
    shown_pids = pids[keep]
    for i, pid in enumerate(shown_ids):
        at = shown_pids == pid
        ax.scatter(
            xy[at, 0],
            xy[at, 1],
            s=42,
            color=cmap(i % cmap.N),
            marker=markers[(i // cmap.N) % len(markers)],
            edgecolors="white",
            linewidths=0.6,
            label=f"id {pid} ({at.sum()})",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{label} 1")
    ax.set_ylabel(f"{label} 2")
    visible_note = " (visible only)" if visibility is not None and row not in ("global", "foreground") else ""
    ax.set_title(
        title
        or f"{label} of the {row!r} embedding: {len(shown_ids)} identities, {int(keep.sum())} images{visible_note}",
        fontsize=12,
        loc="left",
    )
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=9,
        title="identity (images)",
        ncols=1 + len(shown_ids) // 26,
        frameon=False,
    )
    return save_figure(fig, out, DPI)
