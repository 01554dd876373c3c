"""The ablation study on the synthetic set: does each DROP component help under occlusion?

Every configuration below is the shipped `synthetic` recipe plus a few overrides, trained once per
seed on the same synthetic set and pseudo labels. For each run the study records rank-1 and mAP on
the (always occluded) queries under the configuration's own evaluation distance, and the parsing
head's mIoU against the synthetic ground truth on those queries (left/right-agnostic and `eight`).
It also measures the pseudo labels themselves against the ground truth, on unoccluded and on
occluded images. Runs are kept in ``<out>/runs/<config>-seed<k>``; a study started again skips the
finished runs and resumes an interrupted one.
"""
from __future__ import annotations

import csv
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _ui

# Configuration -> overrides of the `synthetic` recipe.
CONFIGS: dict[str, list[str]] = {
    "global baseline": ["loss.parts=false", "eval.distance=global"],
    "BPBreID-equivalent": ["model.decouple=false", "model.dpu=false", "model.ppe=false", "model.pooling=avg",
                           "loss.pct=false", "loss.memory=false", "loss.parsing_smoothing=1"],
    "DROP": [],
    "DROP - decoupling": ["model.decouple=false", "model.dpu=false"],
    "DROP - DPU": ["model.dpu=false"],
    "DROP - PPE": ["model.ppe=false"],
    "DROP - max pooling": ["model.pooling=avg"],
    "DROP - PCT and memory": ["loss.pct=false", "loss.memory=false"],
    "DROP - parsing smoothing": ["loss.parsing_smoothing=1"],
}
METRICS = ("mAP", "rank1", "parts_miou", "eight_miou")


@dataclass
class StudyResult:
    runs: list[dict]  # config, seed, run_dir and METRICS per run
    summary: list[dict]  # config, runs, and mean/std of each metric
    labels: dict  # the pseudo labels against the ground truth
    json_path: Path
    csv_path: Path

    def to_json(self) -> dict:
        return {"summary": self.summary, "runs": self.runs, "labels": self.labels, "json": str(self.json_path),
                "csv": str(self.csv_path)}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _miou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(left/right-agnostic part mIoU, `eight` part mIoU) of [N, h, w] maps against [N, H, W] truth."""
    from .evaluation import parsing_miou
    from .parts import EIGHT_TO_FIVE

    return (parsing_miou(EIGHT_TO_FIVE[pred], EIGHT_TO_FIVE[truth], num_classes=6),
            parsing_miou(pred, truth, num_classes=9))


def _query_parsing_miou(checkpoint: Path, truth) -> tuple[float, float]:
    """The parsing mIoU of a run's model on the queries (features cached beside the checkpoint)."""
    from .api.features import split_features
    from .features_h5 import FeatureFile

    query = FeatureFile(split_features(checkpoint, "query")).read("query", parsing=True)
    return _miou(query.parsing, np.stack([truth[path] for path in query.paths]))


def _labels_against_truth(labels_path: Path, truth, ids: int, seed: int) -> dict:
    """The pseudo labels' mIoU against the ground truth on unoccluded and on occluded images."""
    from .data.synthetic import plan
    from .labels import LabelFile

    occluded = {item.relpath: item.occluded for item in plan(ids, seed)}
    with LabelFile(labels_path) as labels:
        maps = labels.read_all()
        out = {"labeler": labels.attrs["labeler"]}
        for name, want in (("unoccluded", False), ("occluded", True)):
            rows = [i for i, p in enumerate(labels.paths) if occluded[p] == want]
            parts, eight = _miou(maps[rows], np.stack([truth[labels.paths[i]] for i in rows]))
            out[name] = {"images": len(rows), "parts_miou": parts, "eight_miou": eight}
    return out


def _summary(runs: list[dict]) -> list[dict]:
    rows = []
    for config in dict.fromkeys(r["config"] for r in runs):
        mine = [r for r in runs if r["config"] == config]
        row = {"config": config, "runs": len(mine)}
        for metric in METRICS:
            values = [r[metric] for r in mine if r[metric] is not None]
            row[f"{metric}_mean"] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        rows.append(row)
    return rows


def run_study(out: str | Path, seeds: tuple[int, ...] = (0, 1, 2), ids: int = 100,
              configs: tuple[str, ...] | None = None, overrides: list[str] = (),
              progress: bool = True) -> StudyResult:
    """Train every configuration (default: all of `CONFIGS`) with every seed and tabulate the results.

    Args:
        out: folder for the synthetic set, the runs and the result files.
        seeds: training seeds (the synthetic set and its labels are the same for every run).
        ids: identities of the synthetic set.
        configs: a subset of `CONFIGS` keys.
        overrides: extra ``key=value`` changes for every run (e.g. fewer epochs).
    """
    from . import api
    from .errors import lookup
    from .labels import LabelFile
    from .train.run_dir import write_json

    out = Path(out).expanduser()
    chosen = {name: lookup(CONFIGS, name, "study configuration") for name in (configs or tuple(CONFIGS))}
    data = out / "data"
    api.make_synthetic(data, ids=ids, seed=0, progress=progress)
    labeler = api.synthetic_labeler()
    labels_path = api.prepare_data("synthetic", data, labeler=labeler, progress=progress).labels.path
    truth = LabelFile(data / "synthetic" / api.GROUND_TRUTH_FILE)
    runs = []
    for name, config_overrides in chosen.items():
        for seed in seeds:
            run_dir = out / "runs" / f"{_slug(name)}-seed{seed}"
            _ui.info(f"[bold]{name}[/], seed {seed}: {run_dir}")
            run_overrides = [f"data.root={data}", f"data.labeler={labeler}", f"train.seed={seed}",
                             *config_overrides, *overrides]
            resume = run_dir if (run_dir / "last.pt").exists() else None
            result = api.train("synthetic", run_overrides, output=None if resume else run_dir, resume=resume,
                               progress=progress)
            parts_miou, eight_miou = ((None, None) if "loss.parts=false" in config_overrides else
                                      _query_parsing_miou(run_dir / "last.pt", truth))
            runs.append({"config": name, "seed": seed, "run_dir": str(run_dir), "mAP": result.final["mAP"],
                         "rank1": result.final["rank1"], "parts_miou": parts_miou, "eight_miou": eight_miou})
    summary = _summary(runs)
    labels = _labels_against_truth(labels_path, truth, ids, 0)
    json_path, csv_path = out / "study.json", out / "study.csv"
    write_json(json_path, {"summary": summary, "runs": runs, "labels": labels, "seeds": list(seeds), "ids": ids,
                           "overrides": list(overrides)})
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    return StudyResult(runs, summary, labels, json_path, csv_path)
