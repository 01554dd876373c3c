"""The verbs of the command line as Python functions: what `drop <verb>` runs is exactly this.

Each function validates its inputs (raising :class:`~drop_cli.errors.DropError` with a hint), does
the work with a progress bar on stderr, and returns a small result object with ``to_json()``.
"""
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

from . import _ui
from .data import load_dataset
from .data.stats import SplitStats, compare_with_published, split_stats
from .errors import DatasetError, DropError, LabelsError, lookup
from .labelers import LABELERS, LabelerSpec
from .labels import LabelFile, LabelWriter
from .parts import PRESETS, part_names
from .prepare import LabelSummary, run_labeling

GROUND_TRUTH_FILE = "ground_truth.h5"


def default_labels_path(folder: Path, labeler: str, preset: str) -> Path:
    """Where `prepare-data` puts a dataset's labels unless told otherwise."""
    return folder / f"labels-{labeler}-{preset}.h5"


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return min(os.cpu_count() or 1, 8)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise DropError(f"--workers must be a whole number >= 0, got {workers!r}.",
                        hint="Use 0 to work in this process, or up to the number of CPU cores.")
    return workers


# ----------------------------------------------------------------------------- dataset statistics


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


# ----------------------------------------------------------------------------- prepare-data


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
        from .labelers.pose_model import pose_model_path

        return {"model_path": pose_model_path(pose_model)}
    if labeler == "synthetic":
        truth = folder / GROUND_TRUTH_FILE
        if not truth.is_file():
            raise LabelsError(f"the synthetic labeler needs {truth}, which `drop make-synthetic` writes.",
                              hint="Use it on a dataset made by `drop make-synthetic`, or pick another --labeler.")
        return {"ground_truth": truth}
    if labeler == "bpbreid":
        return {"masks_dir": _bpbreid_masks_dir(dataset, folder, relpaths, bpbreid_masks), "dataset": dataset}
    return {}


def _bpbreid_masks_dir(dataset: str, folder: Path, relpaths: list[str], explicit: str | Path | None) -> Path:
    from .labelers.bpbreid import mask_file

    if explicit is not None:
        masks_dir = Path(explicit).expanduser()
    else:
        candidates = sorted(p for p in (folder / "masks").glob("*") if p.is_dir())
        if len(candidates) != 1:
            raise LabelsError(f"cannot tell which BPBreID masks to use: {folder / 'masks'} holds "
                              f"{len(candidates)} mask folders.",
                              hint="Pass --bpbreid-masks DIR (e.g. masks/pifpaf_maskrcnn_filtering).")
        masks_dir = candidates[0]
    if not masks_dir.is_dir():
        raise LabelsError(f"BPBreID mask folder {masks_dir} not found.",
                          hint="Download BPBreID's masks for this dataset and pass --bpbreid-masks DIR.")
    missing = [p for p in relpaths if not mask_file(masks_dir, p, dataset).is_file()]
    if len(missing) == len(relpaths):
        raise LabelsError(f"none of the {len(relpaths)} images has a BPBreID mask in {masks_dir} "
                          f"(looked for e.g. {mask_file(masks_dir, relpaths[0], dataset)}).",
                          hint="Point --bpbreid-masks at the folder that holds the split folders.")
    if missing:
        _ui.warn(f"{len(missing)} image(s) have no BPBreID mask and will be flagged missing_source, "
                 f"e.g. {', '.join(missing[:3])}.")
    return masks_dir


def prepare_data(dataset: str, root: str | Path, labeler: str = "pose", preset: str = "eight",
                 out: str | Path | None = None, workers: int | None = None, height: int = 128, width: int = 64,
                 pose_model: str | Path | None = None, bpbreid_masks: str | Path | None = None,
                 pattern: str | None = None, overwrite: bool = False, progress: bool = True) -> PrepareResult:
    """Write the pseudo human-parsing labels of every image of ``dataset`` into one HDF5 file.

    Args:
        dataset: a dataset key (see ``drop_cli.data.DATASET_NAMES``).
        root: the folder that contains the dataset folder.
        labeler: ``pose``, ``bpbreid``, ``stripes`` or ``synthetic``.
        preset: ``eight`` or ``five`` body parts.
        out: the labels file; default ``<dataset folder>/labels-<labeler>-<preset>.h5``.
        workers: labelling processes (default: the CPU count, at most 8; 0 = this process).
        height, width: label map size.
        pose_model: the BlazePose ``.tflite`` file, for offline machines.
        bpbreid_masks: the folder of BPBreID's masks for this dataset.
        pattern: the file-name regex of the ``folder`` dataset.
        overwrite: replace an existing labels file made with other settings.
    """
    start = time.perf_counter()
    workers = _check_workers(workers)
    lookup(LABELERS, labeler, "labeler")
    parts = part_names(preset)
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
    out = Path(out).expanduser() if out else default_labels_path(ds.folder, labeler, preset)
    _ui.info(f"Labelling {len(relpaths):,} images of {dataset} with [bold]{labeler}[/] ({preset}) into {out}")
    with _ui.progress_bar("prepare-data", len(relpaths), enabled=progress) as advance:
        summary = run_labeling(ds.folder, dataset, splits, spec, out, workers, advance, overwrite)
    for name, count in summary.flag_counts.items():
        _ui.warn(f"{count} image(s) flagged {name}, e.g. {', '.join(summary.flagged_examples[name][:3])}.")
    return PrepareResult(info, summary, labeler, preset, parts, time.perf_counter() - start)


# ----------------------------------------------------------------------------- make-synthetic


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
    from .data.synthetic import render

    truths = []
    for item in items:
        image, parts = render(item, num_ids, seed)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
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
    from .data.synthetic import IMAGE_HEIGHT, IMAGE_WIDTH, plan

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



# ----------------------------------------------------------------------------- train


def resolve_recipe(recipe: str | Path | None = None, overrides: list[str] = (),
                   resume: str | Path | None = None):
    """The recipe a run uses: the file (or, resuming without one, the run's own recipe.yaml) plus overrides."""
    from .recipe import load_recipe

    if recipe is None and resume is not None:
        recipe = Path(resume).expanduser() / "recipe.yaml"
    return load_recipe(recipe, list(overrides))


def train(recipe: str | Path | None = None, overrides: list[str] = (), output: str | Path | None = None,
          resume: str | Path | None = None, device: str = "auto", progress: bool = True):
    """Train DROP from a recipe; evaluates every ``train.eval_every`` epochs and checkpoints into a run folder.

    Args:
        recipe: a YAML recipe (see ``recipes/``); optional with ``resume``.
        overrides: ``key=value`` strings, e.g. ``["optim.lr=1e-4", "model.dpu=false"]``.
        output: the run folder (default ``<train.output>/<train.name>``, numbered if it exists).
        resume: a run folder whose ``last.pt`` to continue from (the recipe must be the same).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        a ``TrainResult`` with the run folder, the best and final evaluation.
    """
    from .train.session import run_training

    return run_training(resolve_recipe(recipe, overrides, resume), output, resume, device, progress)


# ----------------------------------------------------------------------------- extract-features


@dataclass
class ExtractResult:
    features: Path
    dataset: str
    splits: dict[str, int]  # split -> images
    names: tuple[str, ...]
    device: str
    extracted: int  # images run through the model by this call (0 when the file was already complete)
    extract_seconds: float
    seconds: float
    resumed_chunks: int = 0
    already_complete: bool = False

    @property
    def images_per_s(self) -> float | None:
        return self.extracted / self.extract_seconds if self.extracted and self.extract_seconds > 0 else None

    def to_json(self) -> dict:
        rate = self.images_per_s
        return {"features": str(self.features), "dataset": self.dataset, "splits": self.splits,
                "names": list(self.names), "device": self.device, "extracted": self.extracted,
                "resumed_chunks": self.resumed_chunks, "already_complete": self.already_complete,
                "seconds": round(self.seconds, 3), "images_per_s": round(rate, 1) if rate is not None else None}


def _sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**22), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse_splits(splits: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"query,gallery"`` (or a sequence) -> checked split names."""
    from .features_h5 import SPLITS

    names = tuple(s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip())
    for name in names:
        lookup(dict.fromkeys(SPLITS), name, "split")
    if not names or len(set(names)) != len(names):
        raise DropError(f"--splits must name each split once, got {','.join(names) or 'nothing'!r}.",
                        hint="E.g. --splits query,gallery.")
    return names


def _features_complete(out: Path, settings: dict) -> bool:
    """True when ``out`` exists with exactly these settings; a DropError when it exists with others."""
    from .features_h5 import FeatureFile

    if not out.exists():
        return False
    stored = json.loads(FeatureFile(out).attrs.get("settings", "{}"))
    differ = [key for key in settings if stored.get(key) != settings[key]]
    if differ:
        raise DropError(f"{out} already exists with other settings ({', '.join(differ)}).",
                        hint="Pass --overwrite to replace it, or --out to write another file.")
    return True


def _extract_split(model, images, split: str, todo: list[int], partial, device, batch_size: int, workers: int,
                   flip_tta: bool, dtype, parsing: bool, advance) -> int:
    """Embed the chunks ``todo`` of one split, saving each to ``partial`` as it finishes; the images done."""
    import itertools

    from torch.utils.data import DataLoader

    from .features_h5 import chunk_ranges
    from .train.features import extract_features as embed

    if not todo:
        return 0
    ranges = chunk_ranges(len(images))
    batches = {c: [list(range(s, min(s + batch_size, ranges[c][1]))) for s in range(*ranges[c], batch_size)]
               for c in todo}
    loader = iter(DataLoader(images, batch_sampler=[b for c in todo for b in batches[c]], num_workers=workers,
                             pin_memory=device.type == "cuda"))
    for c in todo:  # one loader for the split: its workers serve every chunk, each chunk its own batches
        features = embed(model, itertools.islice(loader, len(batches[c])), device, flip_tta, dtype, parsing, advance)
        partial.save(split, c, features.embeddings, features.visibility, features.parsing)
    return sum(ranges[c][1] - ranges[c][0] for c in todo)


def extract_features(checkpoint: str | Path, dataset: str | None = None, root: str | Path | None = None,
                     splits: str | list[str] | tuple[str, ...] = ("query", "gallery"), out: str | Path | None = None,
                     flip_tta: bool | None = None, batch_size: int | None = None, device: str = "auto",
                     parsing: bool = True, half: bool = False, overwrite: bool = False,
                     progress: bool = True) -> ExtractResult:
    """Run a trained model over a dataset's splits and cache its embeddings in one HDF5 file.

    Args:
        checkpoint: a ``best.pt`` or ``last.pt`` of a run folder.
        dataset, root: the images (default: the recipe's test dataset and its root).
        splits: which splits, e.g. ``"query,gallery"``.
        out: the features file (default ``features.h5`` next to the checkpoint).
        flip_tta: also embed the mirrored image (default: the recipe's ``eval.flip_tta``).
        batch_size: images per batch (default: the recipe's ``eval.batch_size``).
        device: ``auto``, ``cpu`` or ``cuda``.
        parsing: store the predicted label maps (for ``drop visualize``).
        half: store the embeddings as float16 (half the size).
        overwrite: replace an existing features file made with other settings.

    An interrupted run resumes from the chunks in ``<out>.partial/``; a complete file with the same
    settings is left as it is. The file layout: :mod:`drop_cli.features_h5`.
    """
    import hashlib

    import torch
    import yaml

    from .data.images import ReidImages
    from .data.transforms import EvalTransform
    from .features_h5 import CHUNK_IMAGES, PartialFeatures, assemble_features, chunk_ranges
    from .recipe import recipe_from_dict
    from .train.checkpoint import load_checkpoint, model_from_checkpoint
    from .train.loop import amp_dtype
    from .train.session import resolve_device

    start = time.perf_counter()
    checkpoint = Path(checkpoint).expanduser()
    ckpt = load_checkpoint(checkpoint)
    recipe = recipe_from_dict(ckpt["recipe"])
    test_dataset = recipe.data.test_dataset or recipe.data.dataset
    dataset = dataset or test_dataset
    if root is None:
        root = (recipe.data.test_root or recipe.data.root) if dataset == test_dataset else recipe.data.root
    split_names = _parse_splits(splits)
    flip_tta = recipe.eval.flip_tta if flip_tta is None else flip_tta
    batch_size = recipe.eval.batch_size if batch_size is None else batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise DropError(f"--batch-size must be a positive whole number, got {batch_size!r}.")
    dev = resolve_device(device)
    ds = load_dataset(dataset, root)
    records = {split: ds.splits[split] for split in split_names}
    empty = [split for split, recs in records.items() if not recs]
    if empty:
        raise DropError(f"{dataset} has no {' or '.join(empty)} images.",
                        hint=f"Choose other --splits; it has: {', '.join(s for s, r in ds.splits.items() if r)}.")
    names = ("global", "foreground", *part_names(recipe.data.preset))
    counts = {split: len(recs) for split, recs in records.items()}
    out = Path(out).expanduser() if out else checkpoint.parent / "features.h5"
    settings = {"checkpoint_sha256": _sha256_file(checkpoint), "dataset": dataset,
                "dataset_folder": str(ds.folder.resolve()),
                "splits": list(split_names), "paths": {s: len(r) for s, r in records.items()},
                "paths_sha256": hashlib.sha256("\n".join(f"{s}:{r.path}" for s in split_names
                                                          for r in records[s]).encode()).hexdigest(),
                "height": recipe.data.height, "width": recipe.data.width, "flip_tta": flip_tta, "parsing": parsing,
                "dtype": "float16" if half else "float32"}
    if not overwrite and _features_complete(out, settings):
        return ExtractResult(out, dataset, counts, names, str(dev), 0, 0.0, time.perf_counter() - start,
                             already_complete=True)

    model = model_from_checkpoint(ckpt).to(dev)
    if dev.type == "cuda" and recipe.train.channels_last:  # as in training's evaluation: the same kernels
        model = model.to(memory_format=torch.channels_last)
    partial = PartialFeatures(out.with_name(f"{out.name}.partial"), {**settings, "chunk_images": CHUNK_IMAGES})
    done = {split: partial.done(split) for split in split_names}
    transform = EvalTransform(recipe.data.height, recipe.data.width)
    _ui.info(f"Extracting features of {sum(counts.values()):,} images of {dataset} ({', '.join(split_names)}) "
             f"with {checkpoint} on {dev} into {out}")
    extracted, extract_start = 0, time.perf_counter()
    with _ui.progress_bar("extract-features", sum(counts.values()), enabled=progress) as advance:
        advance(sum(stop - first for split in split_names
                    for c, (first, stop) in enumerate(chunk_ranges(counts[split])) if c in done[split]))
        for split in split_names:
            todo = [c for c in range(len(chunk_ranges(counts[split]))) if c not in done[split]]
            extracted += _extract_split(model, ReidImages(records[split], ds.folder, transform), split, todo, partial,
                                        dev, batch_size, recipe.data.workers, flip_tta,
                                        amp_dtype(dev, recipe.train.amp), parsing, advance)
    extract_seconds = time.perf_counter() - extract_start
    attrs = {"dataset": dataset, "dataset_folder": settings["dataset_folder"], "splits": list(split_names),
             "checkpoint": str(checkpoint), "checkpoint_sha256": settings["checkpoint_sha256"],
             "recipe": yaml.safe_dump(ckpt["recipe"], sort_keys=False),
             "model": json.dumps({**ckpt["recipe"]["model"], "num_classes": ckpt["num_classes"],
                                  "num_parts": len(names) - 2}),
             "settings": json.dumps(settings), "height": recipe.data.height, "width": recipe.data.width,
             "flip_tta": flip_tta}
    labels = {split: ([r.path for r in recs], np.array([r.pid for r in recs], np.int64),
                      np.array([r.camid for r in recs], np.int64)) for split, recs in records.items()}
    not_finite = assemble_features(out, partial, labels, names, attrs, settings["dtype"])
    partial.remove()
    if not_finite:
        _ui.warn(f"{len(not_finite)} image(s) have NaN or infinite embeddings, e.g. {', '.join(not_finite[:3])}; "
                 "`drop evaluate` will refuse this file.")
    return ExtractResult(out, dataset, counts, names, str(dev), extracted, extract_seconds,
                         time.perf_counter() - start, resumed_chunks=sum(len(d) for d in done.values()))


# ----------------------------------------------------------------------------- evaluate


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
        return {"features": str(self.features), "dataset": self.dataset, "queries": self.queries,
                "gallery": self.gallery, "rerank_parameters": self.rerank, "results": self.results,
                "json": str(self.json_path), "csv": str(self.csv_path), "seconds": round(self.seconds, 3)}


def evaluate(features: str | Path, distance: str = "parts+foreground", visibility: bool = True, rerank: bool = False,
             k1: int = 20, k2: int = 6, lambda_value: float = 0.3, ablate: bool = False,
             out: str | Path | None = None, dataset: str | None = None, progress: bool = True) -> EvaluationResult:
    """Score cached features (Market-1501 protocol): rank-1/5/10, mAP and mINP, written as JSON and CSV.

    Args:
        features: a file written by :func:`extract_features` (with query and gallery).
        distance: ``global``, ``foreground``, ``parts`` or ``parts+foreground`` (DROP's).
        visibility: weight the parts by their visibility (False: every part counts).
        rerank: k-reciprocal re-ranking with ``k1``, ``k2`` and ``lambda_value``.
        ablate: evaluate the whole grid instead (:func:`drop_cli.evaluation.report.ablation_grid`):
            every distance x visibility x re-ranking, and each part left out of the default distance.
        out: folder for ``eval.json``/``eval.csv`` (``ablate.*`` with ``ablate``); default: the
            features file's folder.
        dataset: if given, the dataset the features must come from.

    Returns:
        An ``EvaluationResult``; metrics are fractions in [0, 1].
    """
    import csv

    from .evaluation.report import Rerank, ablation_grid, evaluate_grid, evaluate_setting, make_setting
    from .features_h5 import FeatureFile

    start = time.perf_counter()
    params = Rerank(k1, k2, lambda_value)
    setting = make_setting(distance, visibility, rerank)
    file = FeatureFile(features)
    if dataset is not None and file.dataset != dataset:
        raise DropError(f"{file.path} holds features of {file.dataset}, not {dataset}.",
                        hint=f"Extract them: `drop extract-features --checkpoint CKPT --dataset {dataset}`.")
    file.require(("query", "gallery"))
    query, gallery = file.read("query"), file.read("gallery")
    settings = ablation_grid(file.names[2:]) if ablate else [setting]
    with _ui.progress_bar("evaluate", len(settings), unit="run", enabled=progress and ablate) as advance:
        if ablate:
            rows = evaluate_grid(query, gallery, file.names, settings, params, advance)
        else:
            rows = [evaluate_setting(query, gallery, file.names, setting, params)]
    folder = Path(out).expanduser() if out else file.path.parent
    stem = "ablate" if ablate else "eval"
    result = EvaluationResult(file.path, file.dataset, len(query.pids), len(gallery.pids),
                              {"k1": k1, "k2": k2, "lambda": lambda_value}, rows, folder / f"{stem}.json",
                              folder / f"{stem}.csv", 0.0)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(result.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        result.seconds = time.perf_counter() - start
        result.json_path.write_text(json.dumps(result.to_json(), indent=1))
    except (PermissionError, NotADirectoryError, FileExistsError) as e:
        raise DropError(f"cannot write to {folder}: {e.strerror}.", hint="Choose a writable folder with --out.") from None
    return result


# ----------------------------------------------------------------------------- visualize


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


def visualize_labels(labels: str | Path, root: str | Path | None = None, split: str | None = None,
                     count: int | None = 16, images: list[str] | None = None, seed: int = 0,
                     out: str | Path | None = None) -> VisualizeResult:
    """Draw images with their pseudo labels overlaid (``figures/labels.png`` next to the labels file).

    Args:
        labels: a prepare-data labels file.
        root: the folder that contains the dataset folder (default: the labels file's own folder,
            where prepare-data puts it).
        split: draw from this split only; images: exactly these paths; count, seed: the random draw.
    """
    from .data.datasets import dataset_folder
    from .viz import draw_labels

    start = time.perf_counter()
    label_file = LabelFile(labels)
    dataset = label_file.attrs["dataset"]
    folder = dataset_folder(dataset, root) if root is not None else label_file.path.parent
    out = Path(out) if out else label_file.path.parent / "figures" / f"labels-{split or 'all'}.png"
    path = draw_labels(out, label_file, folder, pool=_split_paths(dataset, folder, split), images=images,
                       count=count, seed=seed)
    return VisualizeResult([path], time.perf_counter() - start)


def _figures_dir(features_path: Path, out: str | Path | None, name: str) -> Path:
    return Path(out) if out else features_path.parent / "figures" / name


def visualize_parsing(features: str | Path | None = None, labels: str | Path | None = None, split: str = "query",
                      count: int | None = 8, images: list[str] | None = None, seed: int = 0,
                      out: str | Path | None = None, checkpoint: str | Path | None = None) -> VisualizeResult:
    """Draw predicted parsing next to the pseudo labels, from a features file with parsing maps or
    from a checkpoint (whose features, parsing maps included, are extracted and cached first)."""
    from .features_h5 import FeatureFile
    from .viz import draw_parsing

    start = time.perf_counter()
    if (features is None) == (checkpoint is None):
        raise DropError("give either --features or --checkpoint.",
                        hint="--features reads a cache from `drop extract-features`; --checkpoint makes one.")
    if checkpoint is not None:
        features = extract_features(checkpoint, splits=(split,), out=Path(checkpoint).with_name(f"features-{split}.h5"),
                                    progress=False).features
    cache = FeatureFile(features)
    if not cache.has_parsing:
        raise DropError(f"{cache.path} holds no parsing maps.",
                        hint="Extract features again with parsing maps (drop extract-features without --no-parsing).")
    data = cache.read(split, parsing=True)
    folder = Path(cache.attrs["dataset_folder"])
    label_file = LabelFile(labels) if labels else None
    path = draw_parsing(_figures_dir(cache.path, out, f"parsing-{split}.png"), folder, data.paths, data.parsing,
                        cache.names[2:], label_file, images=images, count=count, seed=seed)
    return VisualizeResult([path], time.perf_counter() - start)


def visualize_ranking(features: str | Path, distance: str = "parts+foreground", visibility: bool = True,
                      rerank: bool = False, queries: list[int] | None = None, query_ids: list[int] | None = None,
                      worst: int | None = None, count: int = 10, k: int = 10,
                      out: str | Path | None = None) -> VisualizeResult:
    """Draw query rows with their top-k gallery images, under the same distance `drop evaluate` scores."""
    from .evaluation.report import make_setting, setting_distances
    from .features_h5 import FeatureFile
    from .viz import ImageSet, draw_ranking

    start = time.perf_counter()
    cache = FeatureFile(features)
    cache.require(("query", "gallery"))
    query, gallery = cache.read("query"), cache.read("gallery")
    setting = make_setting(distance, visibility, rerank)
    distmat = setting_distances(query, gallery, cache.names, setting)
    title = (f"{cache.dataset}: {distance} distance" + (", visibility" if visibility else "")
             + (", re-ranked" if rerank else ""))
    path = draw_ranking(_figures_dir(cache.path, out, "ranking.png"), Path(cache.attrs["dataset_folder"]),
                        ImageSet.from_features(query, cache.names), ImageSet.from_features(gallery, cache.names),
                        distmat, queries=queries, query_ids=query_ids, worst=worst, count=count, k=k, title=title)
    return VisualizeResult([path], time.perf_counter() - start)


def visualize_training(run_dir: str | Path, out: str | Path | None = None) -> VisualizeResult:
    """Draw a run's loss terms, learning rate, rank-1, mAP and mINP against epochs from its metrics.csv."""
    from .viz import plot_training_curves, read_history

    start = time.perf_counter()
    metrics = Path(run_dir).expanduser() / "metrics.csv"
    if not metrics.is_file():
        raise DropError(f"{metrics} not found.", hint="Pass a run folder made by `drop train` (it holds metrics.csv).")
    history = read_history(metrics)
    run_dir = metrics.parent
    path = plot_training_curves(history, Path(out) if out else run_dir / "figures" / "training.png")
    return VisualizeResult([path], time.perf_counter() - start)


def visualize_embeddings(features: str | Path, split: str = "gallery", row: str = "global", num_ids: int = 10,
                         ids: list[int] | None = None, method: str = "tsne", seed: int = 0,
                         out: str | Path | None = None) -> VisualizeResult:
    """Draw a 2-D projection (t-SNE or PCA) of one embedding row, coloured by identity."""
    from .features_h5 import FeatureFile
    from .viz import draw_embeddings

    start = time.perf_counter()
    cache = FeatureFile(features)
    data = cache.read(split)
    path = draw_embeddings(_figures_dir(cache.path, out, f"embeddings-{split}-{row}.png"), data.embeddings,
                           cache.names, data.pids, row=row, visibility=data.visibility, ids=ids, num_ids=num_ids,
                           method=method, seed=seed, title=f"{cache.dataset} {split}: {row} embedding ({method})")
    return VisualizeResult([path], time.perf_counter() - start)


# ----------------------------------------------------------------------------- quickstart


@dataclass
class QuickstartResult:
    run_dir: Path
    labeler: str
    evaluate: list[dict]
    images: list[Path]
    seconds: float

    def to_json(self) -> dict:
        return {"run_dir": str(self.run_dir), "labeler": self.labeler, "evaluate": self.evaluate,
                "images": [str(p) for p in self.images], "seconds": round(self.seconds, 3)}


def synthetic_labeler() -> str:
    """The labeler for the synthetic set: `pose` when its model file can be had, else the synthetic
    ground truth (with a warning saying why)."""
    from .errors import ModelFileError
    from .labelers.pose_model import pose_model_path

    try:
        pose_model_path()
    except ModelFileError as e:
        _ui.warn(f"the pose labeler's model file cannot be had ({e.message}); using the synthetic ground truth.")
        return "synthetic"
    return "pose"


def quickstart(out: str | Path = "quickstart", ids: int = 100, overrides: list[str] = (),
               progress: bool = True) -> QuickstartResult:
    """The whole loop on the synthetic set, on a CPU: data, labels, training, features, evaluation, pictures.

    Args:
        out: the folder for everything (``data/``, ``runs/``).
        ids: identities of the synthetic set.
        overrides: ``key=value`` changes to the `synthetic` recipe (e.g. ``train.epochs=2``).
    """
    start = time.perf_counter()
    out = Path(out).expanduser()
    data = out / "data"
    _ui.info(f"[bold]1/6[/] synthetic set in {data}")
    make_synthetic(data, ids=ids, seed=0, progress=progress)
    labeler = synthetic_labeler()
    _ui.info(f"[bold]2/6[/] {labeler} labels")
    labels = prepare_data("synthetic", data, labeler=labeler, progress=progress).labels.path
    _ui.info("[bold]3/6[/] training (recipe `synthetic`)")
    run_dir = out / "runs" / "synthetic-drop"
    run = train("synthetic", [f"data.root={data}", f"data.labeler={labeler}", *overrides],
                output=None if (run_dir / "last.pt").exists() else run_dir,
                resume=run_dir if (run_dir / "last.pt").exists() else None, progress=progress)
    _ui.info("[bold]4/6[/] features")
    features = extract_features(run.checkpoint, progress=progress).features
    _ui.info("[bold]5/6[/] evaluation, without and with re-ranking")
    results = [row for rerank in (False, True)
               for row in evaluate(features, rerank=rerank, out=run.run_dir / ("eval-rerank" if rerank else "eval"),
                                   progress=progress).results]
    _ui.info("[bold]6/6[/] pictures")
    images = [*visualize_labels(labels, split="query").images,
              *visualize_parsing(features, labels).images,
              *visualize_ranking(features, worst=8).images,
              *visualize_training(run.run_dir).images]
    return QuickstartResult(run.run_dir, labeler, results, images, time.perf_counter() - start)


def ablation_study(out: str | Path = "study", seeds: tuple[int, ...] = (0, 1, 2), ids: int = 100,
                   configs: tuple[str, ...] | None = None, overrides: list[str] = (), progress: bool = True):
    """Train each DROP ablation (and the baselines) on the synthetic set for every seed; see drop_cli.study."""
    from .study import run_study

    return run_study(out, seeds, ids, configs, overrides, progress)
