"""`drop extract-features`: a checkpoint's embeddings of a dataset's splits into one HDF5 cache."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _ui
from ..data import load_dataset
from ..errors import DropError, lookup
from ..model.output import row_names
from ..parts import part_names


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
    from ..features_h5 import SPLITS

    names = tuple(s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip())
    for name in names:
        lookup(dict.fromkeys(SPLITS), name, "split")
    if not names or len(set(names)) != len(names):
        raise DropError(f"--splits must name each split once, got {','.join(names) or 'nothing'!r}.",
                        hint="E.g. --splits query,gallery.")
    return names


def _features_complete(out: Path, settings: dict) -> bool:
    """True when ``out`` exists with exactly these settings; a DropError when it exists with others."""
    from ..features_h5 import FeatureFile

    if not out.exists():
        return False
    stored = json.loads(FeatureFile(out).attrs.get("settings", "{}"))
    differ = [key for key in settings if stored.get(key) != settings[key]]
    if differ:
        raise DropError(f"{out} already exists with other settings ({', '.join(differ)}).",
                        hint="Pass --overwrite to replace it, or --out to write another file.")
    return True


def _extract_split(model, images, split: str, todo: list[int], partial, device, batch_size: int, workers: int,
                   flip_tta: bool, dtype, parsing: bool, advance, parts: tuple[str, ...], part_embeddings: str) -> int:
    """Embed the chunks ``todo`` of one split, saving each to ``partial`` as it finishes; the images done."""
    import itertools

    from torch.utils.data import DataLoader

    from ..features_h5 import chunk_ranges
    from ..train.features import extract_features as embed

    if not todo:
        return 0
    ranges = chunk_ranges(len(images))
    batches = {c: [list(range(s, min(s + batch_size, ranges[c][1]))) for s in range(*ranges[c], batch_size)]
               for c in todo}
    loader = iter(DataLoader(images, batch_sampler=[b for c in todo for b in batches[c]], num_workers=workers,
                             pin_memory=device.type == "cuda"))
    for c in todo:  # one loader for the split: its workers serve every chunk, each chunk its own batches
        features = embed(model, itertools.islice(loader, len(batches[c])), device, flip_tta, dtype, parsing, advance,
                         parts=parts, part_embeddings=part_embeddings)
        partial.save(split, c, features.embeddings, features.visibility, features.parsing)
    return sum(ranges[c][1] - ranges[c][0] for c in todo)


def extract_features(checkpoint: str | Path, dataset: str | None = None, root: str | Path | None = None,
                     splits: str | list[str] | tuple[str, ...] = ("query", "gallery"), out: str | Path | None = None,
                     flip_tta: bool | None = None, batch_size: int | None = None, device: str = "auto",
                     parsing: bool = True, half: bool = False, overwrite: bool = False,
                     progress: bool = True) -> ExtractResult:
    """Run a trained model over a dataset's splits and cache its embeddings in one HDF5 file.

    Args:
        checkpoint: a run folder's ``last.pt``.
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

    import yaml

    from ..data.images import ReidImages
    from ..data.transforms import EvalTransform
    from ..features_h5 import CHUNK_IMAGES, PartialFeatures, assemble_features, chunk_ranges
    from ..recipe import recipe_from_dict
    from ..train.checkpoint import load_checkpoint, model_from_checkpoint
    from ..train.loop import amp_dtype
    from ..train.session import place_model, resolve_device

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
    parts = part_names(recipe.data.preset)
    names = row_names(parts)
    counts = {split: len(recs) for split, recs in records.items()}
    out = Path(out).expanduser() if out else checkpoint.parent / "features.h5"
    settings = {"checkpoint_sha256": _sha256_file(checkpoint), "dataset": dataset,
                "dataset_folder": str(ds.folder.resolve()),
                "splits": list(split_names), "paths": {s: len(r) for s, r in records.items()},
                "paths_sha256": hashlib.sha256("\n".join(f"{s}:{r.path}" for s in split_names
                                                          for r in records[s]).encode()).hexdigest(),
                "height": recipe.data.height, "width": recipe.data.width, "flip_tta": flip_tta, "parsing": parsing,
                "dtype": "float16" if half else "float32", "part_embeddings": recipe.eval.part_embeddings}
    if not overwrite and _features_complete(out, settings):
        return ExtractResult(out, dataset, counts, names, str(dev), 0, 0.0, time.perf_counter() - start,
                             already_complete=True)

    model = place_model(model_from_checkpoint(ckpt), dev, recipe.train.channels_last)  # as training runs it
    partial = PartialFeatures(out.with_name(f"{out.name}.partial"), {**settings, "chunk_images": CHUNK_IMAGES})
    done = {split: partial.done(split) for split in split_names}
    transform = EvalTransform(recipe.data.height, recipe.data.width, antialias=recipe.data.antialias)
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
                                        amp_dtype(dev, recipe.train.amp), parsing, advance, parts,
                                        recipe.eval.part_embeddings)
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


def split_features(checkpoint: str | Path, split: str) -> Path:
    """The features file of one split of the checkpoint's test dataset, ``features-<split>.h5`` beside
    it: extracted once (quietly), then reused by every caller that needs that split's features."""
    checkpoint = Path(checkpoint).expanduser()
    return extract_features(checkpoint, splits=(split,), out=checkpoint.with_name(f"features-{split}.h5"),
                            progress=False).features
