"""`drop extract-features`: a checkpoint's embeddings of a dataset's splits into one HDF5 cache."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import _ui
from .._files import sha256_file
from ..data import load_dataset
from ..data.transforms import EvalTransform
from ..errors import DropError, lookup
from ..features import SPLITS, Extraction, extract_to_file, features_complete
from ..model import input_normalisation
from ..parts import part_names, row_names
from ..recipe import recipe_from_dict
from ..train.checkpoint import load_checkpoint, model_from_checkpoint
from ..train.loop import amp_dtype
from ..train.session import place_model, resolve_device


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
        return {
            "features": str(self.features),
            "dataset": self.dataset,
            "splits": self.splits,
            "names": list(self.names),
            "device": self.device,
            "extracted": self.extracted,
            "resumed_chunks": self.resumed_chunks,
            "already_complete": self.already_complete,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(rate, 1) if rate is not None else None,
        }


def _parse_splits(splits: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"query,gallery"`` (or a sequence) -> checked split names."""
    names = tuple(s.strip() for s in (splits.split(",") if isinstance(splits, str) else splits) if s.strip())
    for name in names:
        lookup(dict.fromkeys(SPLITS), name, "split")
    if not names or len(set(names)) != len(names):
        raise DropError(
            f"--splits must name each split once, got {','.join(names) or 'nothing'!r}.",
            hint="E.g. --splits query,gallery.",
        )
    return names


def extract_features(
    checkpoint: str | Path,
    *,
    dataset: str | None = None,
    root: str | Path | None = None,
    splits: str | list[str] | tuple[str, ...] = ("query", "gallery"),
    out: str | Path | None = None,
    flip_tta: bool | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    parsing: bool = True,
    half: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> ExtractResult:
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
    settings is left as it is. The file layout: :mod:`drop_cli.features.file`.
    """
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
        raise DropError(
            f"{dataset} has no {' or '.join(empty)} images.",
            hint=f"Choose other --splits; it has: {', '.join(s for s, r in ds.splits.items() if r)}.",
        )
    parts = part_names(recipe.data.preset)
    names = row_names(parts)
    counts = {split: len(recs) for split, recs in records.items()}
    out = Path(out).expanduser() if out else checkpoint.parent / "features.h5"
    settings = {
        "checkpoint_sha256": sha256_file(checkpoint),
        "dataset": dataset,
        "dataset_folder": str(ds.folder.resolve()),
        "splits": list(split_names),
        "paths": {s: len(r) for s, r in records.items()},
        "paths_sha256": hashlib.sha256(
            "\n".join(f"{s}:{r.path}" for s in split_names for r in records[s]).encode()
        ).hexdigest(),
        "height": recipe.data.height,
        "width": recipe.data.width,
        "flip_tta": flip_tta,
        "parsing": parsing,
        "dtype": "float16" if half else "float32",
        "part_embeddings": recipe.eval.part_embeddings,
    }
    if not overwrite and features_complete(out, settings):
        return ExtractResult(
            out, dataset, counts, names, str(dev), 0, 0.0, time.perf_counter() - start, already_complete=True
        )

    model = place_model(
        model_from_checkpoint(ckpt, source=checkpoint), dev, recipe.train.channels_last
    )  # as training runs it
    how = Extraction(
        model=model,
        device=dev,
        transform=EvalTransform(
            recipe.data.height,
            recipe.data.width,
            antialias=recipe.data.antialias,
            **input_normalisation(model, pretrained=recipe.model.pretrained, weights=recipe.model.weights),
        ),
        parts=parts,
        part_embeddings=recipe.eval.part_embeddings,
        flip_tta=flip_tta,
        autocast_dtype=amp_dtype(dev, recipe.train.amp),
        batch_size=batch_size,
        workers=recipe.data.workers,
        parsing=parsing,
    )
    _ui.info(
        f"Extracting features of {sum(counts.values()):,} images of {dataset} ({', '.join(split_names)}) "
        f"with {checkpoint} on {dev} into {out}"
    )
    attrs = {
        "dataset": dataset,
        "dataset_folder": settings["dataset_folder"],
        "splits": list(split_names),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": settings["checkpoint_sha256"],
        "recipe": yaml.safe_dump(ckpt["recipe"], sort_keys=False),
        "model": json.dumps(
            {**ckpt["recipe"]["model"], "num_classes": ckpt["num_classes"], "num_parts": len(names) - 2}
        ),
        "settings": json.dumps(settings),
        "height": recipe.data.height,
        "width": recipe.data.width,
        "flip_tta": flip_tta,
    }
    run = extract_to_file(how, records, ds.folder, out, settings, attrs, names, settings["dtype"], progress)
    if run.not_finite:
        _ui.warn(
            f"{len(run.not_finite)} image(s) have NaN or infinite embeddings, e.g. "
            f"{', '.join(run.not_finite[:3])}; `drop evaluate` will refuse this file."
        )
    return ExtractResult(
        out,
        dataset,
        counts,
        names,
        str(dev),
        run.extracted,
        run.seconds,
        time.perf_counter() - start,
        resumed_chunks=run.resumed_chunks,
    )


def split_features(checkpoint: str | Path, *, split: str) -> Path:
    """The features file of one split of the checkpoint's test dataset, ``features-<split>.h5`` beside
    it: extracted once (quietly), then reused by every caller that needs that split's features."""
    checkpoint = Path(checkpoint).expanduser()
    return extract_features(
        checkpoint, splits=(split,), out=checkpoint.with_name(f"features-{split}.h5"), progress=False
    ).features
