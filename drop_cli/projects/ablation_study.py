"""The ablation study: does each DROP component help? On the synthetic set, or on any recipe and dataset.

A project on top of the core: it runs the library's verbs (``drop_cli.api``) and nothing below
imports it; ``drop ablation-study`` is its command line.

Every configuration is a recipe plus base-free diffs from ``recipes/ablations/`` (the same files
``drop train --recipe R --recipe ablations/X`` stacks), trained once per seed on the same data and
labels, and judged by the final epoch (the reported result; nothing is selected on the test split).

- Without a recipe: the shipped `synthetic` recipe on a synthetic set made here, labelled by the
  chosen labeler (pose by default). Each run also records the parsing head's mIoU against the
  synthetic ground truth on the (always occluded) queries, and the study measures the pseudo labels
  themselves against the ground truth, on unoccluded and on occluded images.
- With a recipe (e.g. ``occluded_duke`` and ``--set data.root=...``): the user's dataset and labels;
  where DROP's paper reports a number for that dataset and input size (``PAPER``), the table shows
  it beside ours.

Runs are kept in ``<out>/runs/<config>-seed<k>``; a study started again skips the finished runs and
resumes an interrupted one.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _ui, api
from .._files import write_csv
from ..errors import DropError, lookup
from ..evaluation import parsing_miou
from ..features import FeatureFile
from ..labels import LabelFile
from ..parts import EIGHT_TO_FIVE
from ..recipe import load_recipe
from ..synthetic import plan
from ..train.run_dir import write_json

# Configuration -> the ablation files stacked on the study's recipe.
CONFIGS: dict[str, list[str]] = {
    "global baseline": ["ablations/global_baseline"],
    "BPBreID-equivalent": ["ablations/bpbreid"],
    "DROP": [],
    "DROP - decoupling": ["ablations/no_decouple"],
    "DROP - DPU": ["ablations/no_dpu"],
    "DROP - PPE": ["ablations/no_ppe"],
    "DROP - max pooling": ["ablations/avg_pooling"],
    "DROP - PCT and memory": ["ablations/no_pct"],
    "DROP - memory": ["ablations/no_memory"],
    "DROP - parsing smoothing": ["ablations/no_parsing_smoothing"],
}
METRICS = ("mAP", "rank1", "parts_miou", "eight_miou")
# [paper] DROP's published results (rank-1, mAP in %), by (dataset, input height) and configuration; the
# BPBreID row is the DROP authors' run of BPBreID.
PAPER: dict[tuple[str, int], dict[str, tuple[float, float]]] = {
    ("occluded_duke", 256): {"BPBreID-equivalent": (73.9, 62.0), "DROP": (76.8, 63.3)},
    ("occluded_duke", 384): {"BPBreID-equivalent": (75.1, 62.5), "DROP": (77.3, 63.4)},
}


@dataclass
class StudyResult:
    runs: list[dict]  # config, seed, run_dir and METRICS per run
    summary: list[dict]  # config, runs, mean/std of each metric, and the paper's numbers where known
    labels: dict  # the labeler, and on the synthetic set the pseudo labels against the ground truth
    title: str  # what was studied: dataset, input size, labeler
    json_path: Path
    csv_path: Path

    def to_json(self) -> dict:
        return {
            "title": self.title,
            "summary": self.summary,
            "runs": self.runs,
            "labels": self.labels,
            "json": str(self.json_path),
            "csv": str(self.csv_path),
        }


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _miou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(left/right-agnostic part mIoU, `eight` part mIoU) of [N, h, w] maps against [N, H, W] truth."""
    return (
        parsing_miou(EIGHT_TO_FIVE[pred], EIGHT_TO_FIVE[truth], num_classes=6),
        parsing_miou(pred, truth, num_classes=9),
    )


def _query_parsing_miou(checkpoint: Path, truth) -> tuple[float, float]:
    """The parsing mIoU of a run's model on the queries (features cached beside the checkpoint)."""
    query = FeatureFile(api.split_features(checkpoint, split="query")).read("query", parsing=True)
    return _miou(query.parsing, np.stack([truth[path] for path in query.paths]))


def _labels_against_truth(labels_path: Path, truth, ids: int, seed: int) -> dict:
    """The pseudo labels' mIoU against the ground truth on unoccluded and on occluded images."""
    occluded = {item.relpath: item.occluded for item in plan(ids, seed)}
    with LabelFile(labels_path) as labels:
        maps = labels.read_all()
        out = {"labeler": labels.attrs["labeler"]}
        for name, want in (("unoccluded", False), ("occluded", True)):
            rows = [i for i, p in enumerate(labels.paths) if occluded[p] == want]
            parts, eight = _miou(maps[rows], np.stack([truth[labels.paths[i]] for i in rows]))
            out[name] = {"images": len(rows), "parts_miou": parts, "eight_miou": eight}
    return out


def _summary(runs: list[dict], paper: dict[str, tuple[float, float]]) -> list[dict]:
    rows = []
    for config in dict.fromkeys(r["config"] for r in runs):
        mine = [r for r in runs if r["config"] == config]
        row = {"config": config, "runs": len(mine)}
        for metric in METRICS:
            values = [r[metric] for r in mine if r[metric] is not None]
            row[f"{metric}_mean"] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        rank1, mAP = paper.get(config, (None, None))
        row["paper_rank1"], row["paper_mAP"] = rank1, mAP
        rows.append(row)
    return rows


def run_study(
    out: str | Path,
    *,
    recipe: str | Path | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    ids: int = 100,
    labeler: str = "pose",
    configs: tuple[str, ...] | None = None,
    overrides: list[str] = (),
    progress: bool = True,
) -> StudyResult:
    """Train every configuration (default: all of `CONFIGS`) with every seed and tabulate the final epochs.

    Args:
        out: folder for the runs and the result files (and the synthetic set).
        recipe: the DROP recipe the configurations change (e.g. ``occluded_duke``), on the user's data;
            None: the synthetic study.
        seeds: training seeds (the data and labels are the same for every run).
        ids: identities of the synthetic set.
        labeler: the synthetic set's labels (``pose``, or ``synthetic`` for the ground truth).
        configs: a subset of `CONFIGS` keys.
        overrides: extra ``key=value`` changes for every run (e.g. ``data.root=...``, fewer epochs).
    """
    out = Path(out).expanduser()
    chosen = {name: lookup(CONFIGS, name, "study configuration") for name in (configs or tuple(CONFIGS))}
    if not seeds:
        raise DropError("no seeds to train.", hint="Pass --seeds, e.g. 0,1,2.")
    truth = labels_path = None
    if recipe is None:
        data = out / "data"
        recipe, overrides = "synthetic", [f"data.root={data}", f"data.labeler={labeler}", *overrides]
        base = load_recipe(recipe, overrides)  # typos in the overrides fail before any work
        api.make_synthetic(data, ids=ids, seed=0, progress=progress)
        labels_path = api.prepare_data("synthetic", root=data, labeler=labeler, progress=progress).labels.path
        truth = LabelFile(data / "synthetic" / api.GROUND_TRUTH_FILE)
    else:
        base = load_recipe(recipe, overrides)
    title = (
        f"{base.data.test_dataset or base.data.dataset} {base.data.height}x{base.data.width}, "
        f"{base.data.labeler} labels"
    )
    runs = []
    for name, diffs in chosen.items():
        for seed in seeds:
            run_dir = out / "runs" / f"{_slug(name)}-seed{seed}"
            _ui.info(f"[bold]{name}[/], seed {seed}: {run_dir}")
            resume = run_dir if (run_dir / "last.pt").exists() else None
            result = api.train(
                [recipe, *diffs],
                overrides=[*overrides, f"train.seed={seed}"],
                output=None if resume else run_dir,
                resume=resume,
                progress=progress,
            )
            global_only = "ablations/global_baseline" in diffs
            parts_miou, eight_miou = (
                (None, None) if truth is None or global_only else _query_parsing_miou(run_dir / "last.pt", truth)
            )
            runs.append(
                {
                    "config": name,
                    "seed": seed,
                    "run_dir": str(run_dir),
                    "mAP": result.final["mAP"],
                    "rank1": result.final["rank1"],
                    "parts_miou": parts_miou,
                    "eight_miou": eight_miou,
                }
            )
    summary = _summary(runs, PAPER.get((base.data.test_dataset or base.data.dataset, base.data.height), {}))
    labels = {"labeler": base.data.labeler}
    if truth is not None:
        labels = _labels_against_truth(labels_path, truth, ids, 0)
    json_path, csv_path = out / "study.json", out / "study.csv"
    write_json(
        json_path,
        {
            "title": title,
            "summary": summary,
            "runs": runs,
            "labels": labels,
            "seeds": list(seeds),
            "recipe": str(recipe),
            "overrides": list(overrides),
        },
    )
    write_csv(csv_path, summary)
    return StudyResult(runs, summary, labels, title, json_path, csv_path)
