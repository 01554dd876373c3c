"""Dataset verbs: `drop dataset-info`, `drop prepare-data` and `drop make-synthetic`."""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from .. import _ui
from ..data import load_dataset
from ..data.stats import SplitStats, compare_with_published, split_stats
from ..errors import DatasetError, DropError, LabelsError, lookup
from ..labelers import LABELERS, LabelerSpec
from ..labelers.bpbreid import find_masks_dir
from ..labels import LabelWriter, default_label_size, default_labels_path
from ..parts import PRESETS, part_names
from ..prepare import LabelSummary, run_labeling

GROUND_TRUTH_FILE = "ground_truth.h5"


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return min(os.cpu_count() or 1, 8)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise DropError(f"--workers must be a whole number >= 0, got {workers!r}.",
                        hint="Use 0 to work in this process, or up to the number of CPU cores.")
    return workers


@dataclass
class DatasetInfo:
    dataset: str
    folder: Path
    splits: dict[str, SplitStats]
    warnings: list[str]

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "folder": str(self.folder),
                "splits": {k: v.to_json() for k, v in self.splits.items()}, "warnings": self.warnings}


def dataset_info(dataset: str, root: str | Path, pattern: str | None = None) -> DatasetInfo:
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
            "splits": {k: {**v.to_json(), "flagged": self.labels.flagged[k],
                           "part_share": dict(zip(("background", *self.parts), self.labels.part_share[k]))}
                       for k, v in self.info.splits.items() if v.images},
            "labels": str(self.labels.path),
            "labeler": self.labeler,
            "preset": self.preset,
            "flagged": self.flagged,
            "flags": self.labels.flag_counts,
            "warnings": self.info.warnings,
            "already_complete": self.labels.already_complete,
            "seconds": round(self.seconds, 3),
        }


def _labeler_options(labeler: str, dataset: str, folder: Path, relpaths: list[str], pose_model: str | Path | None,
                     bpbreid_masks: str | Path | None) -> dict:
    if labeler == "pose":
        from ..labelers.pose_model import pose_model_path

        return {"model_path": pose_model_path(pose_model)}
    if labeler == "synthetic":
        truth = folder / GROUND_TRUTH_FILE
        if not truth.is_file():
            raise LabelsError(f"the synthetic labeler needs {truth}, which `drop make-synthetic` writes.",
                              hint="Use it on a dataset made by `drop make-synthetic`, or pick another --labeler.")
        return {"ground_truth": truth}
    if labeler == "bpbreid":
        return {"masks_dir": find_masks_dir(dataset, folder, relpaths, bpbreid_masks), "dataset": dataset}
    return {}


def prepare_data(dataset: str, root: str | Path, labeler: str = "pose", preset: str = "eight",
                 out: str | Path | None = None, workers: int | None = None, height: int | None = None,
                 width: int | None = None,
                 pose_model: str | Path | None = None, bpbreid_masks: str | Path | None = None,
                 pattern: str | None = None, overwrite: bool = False, progress: bool = True) -> PrepareResult:
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
    workers = _check_workers(workers)
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


@dataclass
class SyntheticResult:
    folder: Path
    ground_truth: Path
    images: dict[str, int]
    ids: int
    seed: int
    seconds: float
    already_complete: bool = False

    def to_json(self) -> dict:
        return {"folder": str(self.folder), "ground_truth": str(self.ground_truth), "images": self.images,
                "ids": self.ids, "seed": self.seed, "already_complete": self.already_complete,
                "seconds": round(self.seconds, 3)}


def _render_chunk(items: list, num_ids: int, seed: int, folder: Path) -> list[np.ndarray]:
    """Render, encode and write a chunk of synthetic images; their ground-truth part maps."""
    from ..data.synthetic import render

    truths = []
    for item in items:
        image, parts = render(item, num_ids, seed)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise DropError(f"OpenCV could not encode the synthetic image {item.relpath} as JPEG.",
                            hint="Check the opencv-python installation (pip install -e . reinstalls it).")
        (folder / item.relpath).write_bytes(jpeg.tobytes())
        truths.append(parts)
    return truths


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def make_synthetic(root: str | Path, ids: int = 100, seed: int = 0, workers: int | None = None,
                   overwrite: bool = False, progress: bool = True) -> SyntheticResult:
    """Generate the synthetic occluded-pedestrian set in ``<root>/synthetic/`` (Occluded-Duke layout).

    Writes the JPEG images and ``ground_truth.h5`` (a labels file, labeler `synthetic`, preset
    `eight`, at image resolution). The same ``ids`` and ``seed`` give the same bytes; with
    ``$SOURCE_DATE_EPOCH`` set, the labels file is byte-identical too.
    """
    from ..data.synthetic import IMAGE_HEIGHT, IMAGE_WIDTH, plan

    start = time.perf_counter()
    workers = _check_workers(workers)
    items = plan(ids, seed)
    root = Path(root).expanduser()
    folder = root / "synthetic"
    stamp = {"ids": ids, "seed": seed, "images": len(items)}
    stamp_file = folder / "synthetic.json"
    counts = {s: sum(1 for it in items if it.split == s) for s in ("train", "query", "gallery")}
    if folder.exists():
        existing = json.loads(stamp_file.read_text()) if stamp_file.is_file() else None
        if existing == stamp and (folder / GROUND_TRUTH_FILE).is_file() and not overwrite:
            return SyntheticResult(folder, folder / GROUND_TRUTH_FILE, counts, ids, seed,
                                   time.perf_counter() - start, already_complete=True)
        if not overwrite:
            raise DatasetError(f"{folder} already exists" + (f" with ids={existing['ids']} seed={existing['seed']}."
                                                             if existing else " and was not made by drop."),
                               hint="Pass --overwrite to replace it, or choose another ROOT.")
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".synthetic.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for sub in ("bounding_box_train", "query", "bounding_box_test"):
            (tmp / sub).mkdir(parents=True)
    except PermissionError:
        raise DropError(f"cannot write to {root}: permission denied.", hint="Choose another ROOT.") from None
    relpaths = [it.relpath for it in items]
    attrs = {"dataset": "synthetic", "preset": "eight", "parts": list(PRESETS["eight"]), "labeler": "synthetic",
             "labeler_version": LABELERS["synthetic"].version}
    try:
        with _ui.progress_bar("make-synthetic", len(items), enabled=progress) as advance, \
                LabelWriter(tmp / GROUND_TRUTH_FILE, relpaths, IMAGE_HEIGHT, IMAGE_WIDTH, attrs) as writer:
            chunks = list(_chunks(items, 64))
            if workers <= 1:
                results = (_render_chunk(c, ids, seed, tmp) for c in chunks)
                _write_truths(writer, results, advance)
            else:
                with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                    results = pool.map(_render_chunk, chunks, [ids] * len(chunks), [seed] * len(chunks),
                                       [tmp] * len(chunks))
                    _write_truths(writer, results, advance)
            writer.commit()
        (tmp / "synthetic.json").write_text(json.dumps(stamp, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SyntheticResult(folder, folder / GROUND_TRUTH_FILE, counts, ids, seed, time.perf_counter() - start)


def _write_truths(writer: LabelWriter, results, advance) -> None:
    start = 0
    for truths in results:
        batch = np.stack(truths)
        writer.write(start, batch, np.ones(len(batch), np.float32), np.zeros(len(batch), np.uint8))
        start += len(batch)
        advance(len(batch))
