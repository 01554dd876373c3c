"""`drop visualize labels|parsing|ranking|training|embeddings`."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

from ..data import load_dataset
from ..data.datasets import dataset_folder
from ..errors import DropError
from ..evaluation.rerank import K1, K2, LAMBDA
from ..evaluation.scoring import DEFAULT_DISTANCE, Rerank, make_setting, setting_distances
from ..features import FeatureFile
from ..labels import LabelFile
from ..viz import ImageSet, draw_embeddings, draw_labels, draw_parsing, draw_ranking, plot_training_curves, read_history
from .features import split_features


@dataclass
class VisualizeResult:
    images: list[Path]
    seconds: float

    def to_json(self) -> dict:
        return {"images": [str(p) for p in self.images], "seconds": round(self.seconds, 3)}


def _split_paths(dataset: str, folder: Path, split: str | None) -> list[str] | None:
    """The image paths of one split (None: every image)."""
    if split is None:
        return None
    records = load_dataset(dataset, folder).splits.get(split)
    if records is None:
        raise DropError(f"unknown split {split!r}.", hint="Use train, query or gallery.")
    return [r.path for r in records]


def visualize_labels(
    labels: str | Path,
    *,
    root: str | Path | None = None,
    split: str | None = None,
    count: int | None = 16,
    images: list[str] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
) -> VisualizeResult:
    """Draw images with their pseudo labels overlaid (``figures/labels.png`` next to the labels file).

    Args:
        labels: a prepare-data labels file.
        root: the folder that contains the dataset folder (default: the labels file's own folder,
            where prepare-data puts it).
        split: draw from this split only; images: exactly these paths; count, seed: the random draw.
    """
    start = time.perf_counter()
    label_file = LabelFile(labels)
    dataset = label_file.attrs["dataset"]
    folder = dataset_folder(dataset, root) if root is not None else label_file.path.parent
    out = Path(out) if out else label_file.path.parent / "figures" / f"labels-{split or 'all'}.png"
    path = draw_labels(
        out, label_file, folder, pool=_split_paths(dataset, folder, split), images=images, count=count, seed=seed
    )
    return VisualizeResult([path], time.perf_counter() - start)


def _figures_dir(features_path: Path, out: str | Path | None, name: str) -> Path:
    return Path(out) if out else features_path.parent / "figures" / name


def visualize_parsing(
    features: str | Path | None = None,
    *,
    labels: str | Path | None = None,
    split: str = "query",
    count: int | None = 8,
    images: list[str] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    root: str | Path | None = None,
) -> VisualizeResult:
    """Draw predicted parsing next to the pseudo labels, from a features file with parsing maps or
    from a checkpoint (whose features, parsing maps included, are extracted and cached first).
    ``root``: where the images are when the dataset has moved since the features were made."""
    start = time.perf_counter()
    if (features is None) == (checkpoint is None):
        raise DropError(
            "give either --features or --checkpoint.",
            hint="--features reads a cache from `drop extract-features`; --checkpoint makes one.",
        )
    if checkpoint is not None:
        features = split_features(checkpoint, split=split)
    cache = FeatureFile(features)
    if not cache.has_parsing:
        raise DropError(
            f"{cache.path} holds no parsing maps.",
            hint="Extract features again with parsing maps (drop extract-features without --no-parsing).",
        )
    data = cache.read(split, parsing=True)
    folder = cache.images_folder(root)
    label_file = LabelFile(labels) if labels else None
    path = draw_parsing(
        _figures_dir(cache.path, out, f"parsing-{split}.png"),
        folder,
        data.paths,
        data.parsing,
        cache.names[2:],
        label_file,
        images=images,
        count=count,
        seed=seed,
    )
    return VisualizeResult([path], time.perf_counter() - start)


def visualize_ranking(
    features: str | Path,
    *,
    distance: str = DEFAULT_DISTANCE,
    visibility: bool = True,
    rerank: bool = False,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    queries: list[int] | None = None,
    query_ids: list[int] | None = None,
    worst: int | None = None,
    count: int = 10,
    k: int = 10,
    out: str | Path | None = None,
    root: str | Path | None = None,
) -> VisualizeResult:
    """Draw query rows with their top-k gallery images, under the same distance `drop evaluate` scores.
    ``root``: where the images are when the dataset has moved since the features were made."""
    start = time.perf_counter()
    cache = FeatureFile(features)
    cache.require(("query", "gallery"))
    query, gallery = cache.read("query"), cache.read("gallery")
    setting = make_setting(distance, visibility, rerank)
    distmat = setting_distances(query, gallery, cache.names, setting, Rerank(k1, k2, lambda_value))
    title = (
        f"{cache.dataset}: {distance} distance"
        + (", visibility" if visibility else "")
        + (", re-ranked" if rerank else "")
    )
    path = draw_ranking(
        _figures_dir(cache.path, out, "ranking.png"),
        cache.images_folder(root),
        ImageSet.from_features(query, cache.names),
        ImageSet.from_features(gallery, cache.names),
        distmat,
        queries=queries,
        query_ids=query_ids,
        worst=worst,
        count=count,
        k=k,
        title=title,
    )
    return VisualizeResult([path], time.perf_counter() - start)


def visualize_training(run_dir: str | Path, *, out: str | Path | None = None) -> VisualizeResult:
    """Draw a run's loss terms, learning rate, rank-1, mAP and mINP against epochs from its metrics.csv."""
    start = time.perf_counter()
    metrics = Path(run_dir).expanduser() / "metrics.csv"
    if not metrics.is_file():
        raise DropError(f"{metrics} not found.", hint="Pass a run folder made by `drop train` (it holds metrics.csv).")
    try:
        history = read_history(metrics)
    except (UnicodeDecodeError, ValueError, csv.Error) as e:
        raise DropError(
            f"{metrics} is not a metrics file drop wrote ({type(e).__name__}).",
            hint="`drop train --resume RUN` rewrites it from the run's last.pt.",
        ) from None
    run_dir = metrics.parent
    path = plot_training_curves(history, Path(out) if out else run_dir / "figures" / "training.png")
    return VisualizeResult([path], time.perf_counter() - start)


def visualize_embeddings(
    features: str | Path,
    *,
    split: str = "gallery",
    row: str = "global",
    num_ids: int = 10,
    ids: list[int] | None = None,
    method: str = "tsne",
    seed: int = 0,
    out: str | Path | None = None,
) -> VisualizeResult:
    """Draw a 2-D projection (t-SNE or PCA) of one embedding row, coloured by identity."""
    start = time.perf_counter()
    cache = FeatureFile(features)
    data = cache.read(split)
    path = draw_embeddings(
        _figures_dir(cache.path, out, f"embeddings-{split}-{row}.png"),
        data.embeddings,
        cache.names,
        data.pids,
        row=row,
        visibility=data.visibility,
        ids=ids,
        num_ids=num_ids,
        method=method,
        seed=seed,
        title=f"{cache.dataset} {split}: {row} embedding ({method})",
    )
    return VisualizeResult([path], time.perf_counter() - start)
