"""`drop evaluate`: metrics, re-ranking and the ablation grid from a feature cache."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .. import _ui
from .._files import write_csv, write_text
from ..errors import DropError
from ..evaluation.rerank import K1, K2, LAMBDA
from ..evaluation.scoring import (
    DEFAULT_DISTANCE,
    Rerank,
    ablation_grid,
    evaluate_grid,
    evaluate_setting,
    make_setting,
)
from ..features import FeatureFile
from ..train.session import resolve_device


@dataclass
class EvaluationResult:
    features: Path
    dataset: str
    queries: int
    gallery: int
    rerank: dict  # k1, k2, lambda
    results: list[dict]  # distance, visibility, rerank, left_out, rank1, rank5, rank10, mAP, mINP, valid_queries
    json_path: Path
    csv_path: Path
    seconds: float

    def to_json(self) -> dict:
        return {
            "features": str(self.features),
            "dataset": self.dataset,
            "queries": self.queries,
            "gallery": self.gallery,
            "rerank_parameters": self.rerank,
            "results": self.results,
            "json": str(self.json_path),
            "csv": str(self.csv_path),
            "seconds": round(self.seconds, 3),
        }


def evaluate(
    features: str | Path,
    *,
    distance: str = DEFAULT_DISTANCE,
    visibility: bool = True,
    rerank: bool = False,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    ablate: bool = False,
    out: str | Path | None = None,
    dataset: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> EvaluationResult:
    """Score cached features (Market-1501 protocol): rank-1/5/10, mAP and mINP, written as JSON and CSV.

    Args:
        features: a file written by :func:`extract_features` (with query and gallery).
        distance: ``global``, ``foreground``, ``parts`` or ``parts+foreground`` (DROP's).
        visibility: weight the parts by their visibility (False: every part counts).
        rerank: k-reciprocal re-ranking with ``k1``, ``k2`` and ``lambda_value``.
        ablate: evaluate the whole grid instead (:func:`drop_cli.evaluation.scoring.ablation_grid`):
            every distance x visibility x re-ranking, and each part left out of the default distance.
        out: folder for ``eval.json``/``eval.csv`` (``ablate.*`` with ``ablate``); default: the
            features file's folder.
        dataset: if given, the dataset the features must come from.
        device: ``auto`` (CUDA when there is one), ``cpu`` or ``cuda``: where the distances and the
            re-ranking are computed.

    Returns:
        An ``EvaluationResult``; metrics are fractions in [0, 1].
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    params = Rerank(k1, k2, lambda_value)
    setting = make_setting(distance, visibility, rerank)
    file = FeatureFile(features)
    if dataset is not None and file.dataset != dataset:
        raise DropError(
            f"{file.path} holds features of {file.dataset}, not {dataset}.",
            hint=f"Extract them: `drop extract-features --checkpoint CKPT --dataset {dataset}`.",
        )
    file.require(("query", "gallery"))
    query, gallery = file.read("query"), file.read("gallery")
    settings = ablation_grid(file.names[2:]) if ablate else [setting]
    with _ui.progress_bar("evaluate", len(settings), unit="run", enabled=progress and ablate) as advance:
        if ablate:
            rows = evaluate_grid(query, gallery, file.names, settings, params, advance, device=dev)
        else:
            rows = [evaluate_setting(query, gallery, file.names, setting, params, device=dev)]
    folder = Path(out).expanduser() if out else file.path.parent
    stem = "ablate" if ablate else "eval"
    result = EvaluationResult(
        file.path,
        file.dataset,
        len(query.pids),
        len(gallery.pids),
        {"k1": k1, "k2": k2, "lambda": lambda_value},
        rows,
        folder / f"{stem}.json",
        folder / f"{stem}.csv",
        0.0,
    )
    write_csv(result.csv_path, rows)
    result.seconds = time.perf_counter() - start
    write_text(result.json_path, json.dumps(result.to_json(), indent=1))
    return result
