"""Dataset verbs: `drop dataset-info`, `drop prepare-data` and `drop make-synthetic`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import _ui
from ..data import load_dataset
from ..data.stats import SplitStats, compare_with_published, split_stats
from ..errors import DropError, LabelsError, lookup
from ..labels import LABELERS, LabelerSpec, LabelSummary, default_label_size, default_labels_path, run_labeling
from ..labels.labelers.bpbreid import find_masks_dir
from ..labels.labelers.pose_model import pose_model_path
from ..parts import part_names
from ..synthetic import GROUND_TRUTH_FILE, SyntheticResult, write_synthetic


def check_workers(workers: int | None) -> int:
    if workers is None:
        return min(os.cpu_count() or 1, 8)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise DropError(
            f"--workers must be a whole number >= 0, got {workers!r}.",
            hint="Use 0 to work in this process, or up to the number of CPU cores.",
        )
    return workers


@dataclass
class DatasetInfo:
    dataset: str
    folder: Path
    splits: dict[str, SplitStats]
    warnings: list[str]

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "folder": str(self.folder),
            "splits": {k: v.to_json() for k, v in self.splits.items()},
            "warnings": self.warnings,
        }


def dataset_info(dataset: str, *, root: str | Path, pattern: str | None = None) -> DatasetInfo:
    """Parse a dataset and compare its statistics with the published ones."""
    ds = load_dataset(dataset, root, pattern)
    stats = split_stats(ds)
    return DatasetInfo(dataset, ds.folder, stats, compare_with_published(dataset, stats))


@dataclass
class PrepareResult:
    info: DatasetInfo
    labels: LabelSummary
    labeler: str
    preset: str
    parts: tuple[str, ...]
    seconds: float

    @property
    def flagged(self) -> int:
        return sum(self.labels.flagged.values())

    def to_json(self) -> dict:
        return {
            "dataset": self.info.dataset,
            "splits": {
                k: {
                    **v.to_json(),
                    "flagged": self.labels.flagged[k],
                    "part_share": dict(zip(("background", *self.parts), self.labels.part_share[k])),
                }
                for k, v in self.info.splits.items()
                if v.images
            },
            "labels": str(self.labels.path),
            "labeler": self.labeler,
            "preset": self.preset,
            "flagged": self.flagged,
            "flags": self.labels.flag_counts,
            "warnings": self.info.warnings,
            "already_complete": self.labels.already_complete,
            "seconds": round(self.seconds, 3),
        }


def _labeler_options(
    labeler: str,
    dataset: str,
    folder: Path,
    relpaths: list[str],
    pose_model: str | Path | None,
    bpbreid_masks: str | Path | None,
) -> dict:
    if labeler == "pose":
        return {"model_path": pose_model_path(pose_model)}
    if labeler == "synthetic":
        truth = folder / GROUND_TRUTH_FILE
        if not truth.is_file():
            raise LabelsError(
                f"the synthetic labeler needs {truth}, which `drop make-synthetic` writes.",
                hint="Use it on a dataset made by `drop make-synthetic`, or pick another --labeler.",
            )
        return {"ground_truth": truth}
    if labeler == "bpbreid":
        return {"masks_dir": find_masks_dir(dataset, folder, relpaths, bpbreid_masks), "dataset": dataset}
    return {}


def prepare_data(
    dataset: str,
    *,
    root: str | Path,
    labeler: str = "pose",
    preset: str = "eight",
    out: str | Path | None = None,
    workers: int | None = None,
    height: int | None = None,
    width: int | None = None,
    pose_model: str | Path | None = None,
    bpbreid_masks: str | Path | None = None,
    pattern: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Write the pseudo human-parsing labels of every image of ``dataset`` into one HDF5 file.

    Args:
        dataset: a dataset key (see ``drop_cli.data.DATASET_NAMES``).
        root: the folder that contains the dataset folder.
        labeler: ``pose``, ``bpbreid``, ``stripes`` or ``synthetic``.
        preset: ``eight`` or ``five`` body parts.
        out: the labels file; default ``<dataset folder>/labels-<labeler>-<preset>.h5`` (``default_labels_path``).
        workers: labelling processes (default: the CPU count, at most 8; 0 = this process).
        height, width: label map size (default: ``default_label_size``: 256x128 for ``bpbreid``, 128x64).
        pose_model: the BlazePose ``.tflite`` file, for offline machines.
        bpbreid_masks: the folder of BPBreID's masks for this dataset.
        pattern: the file-name regex of the ``folder`` dataset.
        overwrite: replace an existing labels file made with other settings.
    """
    start = time.perf_counter()
    workers = check_workers(workers)
    lookup(LABELERS, labeler, "labeler")
    parts = part_names(preset)
    default_height, default_width = default_label_size(labeler)
    height, width = height or default_height, width or default_width
    if not (8 <= height <= 1024 and 4 <= width <= 1024):
        raise DropError(f"label size {height}x{width} is out of range.", hint="Use e.g. --height 128 --width 64.")
    ds = load_dataset(dataset, root, pattern)
    stats = split_stats(ds)
    info = DatasetInfo(dataset, ds.folder, stats, compare_with_published(dataset, stats))
    for warning in info.warnings:
        _ui.warn(warning)
    splits: dict[str, list[str]] = {}
    for split, record in ds.all_records():
        splits.setdefault(split, []).append(record.path)
    relpaths = [p for paths in splits.values() for p in paths]
    options = _labeler_options(labeler, dataset, ds.folder, relpaths, pose_model, bpbreid_masks)
    spec = LabelerSpec(labeler, preset, height, width, options)
    out = Path(out).expanduser() if out else default_labels_path(ds.folder, labeler, preset, height, width)
    _ui.info(f"Labelling {len(relpaths):,} images of {dataset} with [bold]{labeler}[/] ({preset}) into {out}")
    with _ui.progress_bar("prepare-data", len(relpaths), enabled=progress) as advance:
        summary = run_labeling(ds.folder, dataset, splits, spec, out, workers, advance, overwrite)
    for name, count in summary.flag_counts.items():
        _ui.warn(f"{count} image(s) flagged {name}, e.g. {', '.join(summary.flagged_examples[name][:3])}.")
    return PrepareResult(info, summary, labeler, preset, parts, time.perf_counter() - start)


def make_synthetic(
    root: str | Path,
    *,
    ids: int = 100,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> SyntheticResult:
    """Generate the synthetic occluded-pedestrian set in ``<root>/synthetic/`` (Occluded-Duke layout).

    Writes the JPEG images and ``ground_truth.h5`` (a labels file, labeler `synthetic`, preset
    `eight`, at image resolution). The same ``ids`` and ``seed`` give the same bytes; with
    ``$SOURCE_DATE_EPOCH`` set, the labels file is byte-identical too.
    """
    return write_synthetic(
        root, ids=ids, seed=seed, workers=check_workers(workers), overwrite=overwrite, progress=progress
    )
