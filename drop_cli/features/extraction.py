"""The chunked, resumable extraction of a model's test features into one features file.

Each split is embedded in chunks of ``CHUNK_IMAGES`` images; a finished chunk is saved in
``<out>.partial/`` (``PartialFeatures``), so a run started again after an interruption embeds only
the chunks that are missing, and the final file (``file.assemble_features``) is the same as an
uninterrupted run's. A complete file with the same settings is left alone.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from .. import _ui
from .._distributed import barrier, process_group
from .._files import output_lock
from ..data.datasets import Record
from ..data.images import ReidImages
from ..errors import DropError
from . import file as features_file
from .file import FeatureFile, PartialFeatures, assemble_features, chunk_ranges
from .forward import Features
from .forward import extract_features as embed


class Embedder(Protocol):
    """What the extraction needs of a model: how to load its images and how to embed a run of batches."""

    device: torch.device  # where the batches go (pinned memory on CUDA)
    transform: Callable  # ReidImages' transform: (uint8 image [3, h, w], None) -> (input, None)
    batch_size: int
    workers: int  # DataLoader worker processes

    def features(self, batches: Iterable[dict], advance: Callable[[int], None]) -> Features:
        """The features of DataLoader batches (items with image, pid, camid); ``advance(n)`` after each."""
        ...


@dataclass(frozen=True)
class Extraction:
    """A checkpoint's DropNet and its test-time settings (from its recipe): the Embedder of
    `drop extract-features` (`drop embed` uses `inference.ModelEmbedder`)."""

    model: torch.nn.Module
    device: torch.device
    transform: Callable
    parts: tuple[str, ...]
    part_embeddings: str = "pre_bnneck"
    flip_tta: bool = False
    autocast_dtype: torch.dtype | None = None
    batch_size: int = 128
    workers: int = 0
    parsing: bool = True

    def features(self, batches: Iterable[dict], advance: Callable[[int], None]) -> Features:
        return embed(
            self.model,
            batches,
            self.device,
            self.flip_tta,
            self.autocast_dtype,
            self.parsing,
            advance,
            parts=self.parts,
            part_embeddings=self.part_embeddings,
        )


def features_complete(out: Path, settings: dict) -> bool:
    """True when ``out`` exists with exactly these settings; a DropError when it exists with others."""
    if not out.exists():
        return False
    stored = json.loads(FeatureFile(out).attrs.get("settings", "{}"))
    differ = [key for key in settings if stored.get(key) != settings[key]]
    if differ:
        raise DropError(
            f"{out} already exists with other settings ({', '.join(differ)}).",
            hint="Pass --overwrite to replace it, or --out to write another file.",
        )
    return True


def _extract_split(
    how: Embedder,
    images: ReidImages,
    split: str,
    todo: list[int],
    partial: PartialFeatures,
    advance: Callable[[int], None],
) -> None:
    """Embed the chunks ``todo`` of one split, saving each to ``partial`` as it finishes."""
    if not todo:
        return
    ranges = chunk_ranges(len(images))
    size = how.batch_size
    batches = {c: [list(range(s, min(s + size, ranges[c][1]))) for s in range(*ranges[c], size)] for c in todo}
    loader = iter(
        DataLoader(
            images,
            batch_sampler=[b for c in todo for b in batches[c]],
            num_workers=how.workers,
            pin_memory=how.device.type == "cuda",
        )
    )
    for c in todo:  # one loader for the split: its workers serve every chunk, each chunk its own batches
        features = how.features(itertools.islice(loader, len(batches[c])), advance)
        partial.save(split, c, features.embeddings, features.visibility, features.parsing)


@dataclass
class ExtractionRun:
    extracted: int  # images run through the model by this call (by all its processes under torchrun)
    seconds: float  # spent embedding them (wall time)
    resumed_chunks: int  # chunks found finished in the partial folder
    not_finite: list[str]  # images whose embeddings are NaN or infinite (on the process that wrote the file)


def extract_to_file(
    how: Embedder,
    records: dict[str, list[Record]],
    folder: Path,
    out: Path,
    settings: dict,
    attrs: dict,
    names: tuple[str, ...],
    dtype: str = "float32",
    progress: bool = True,
) -> ExtractionRun:
    """Embed ``records`` (split -> images below ``folder``) into the features file ``out``, resumably.

    ``settings`` are what the content depends on (a partial folder made with others is not reused);
    ``attrs`` go into the file with them; ``names`` are the embedding rows; ``dtype`` of the stored
    embeddings ("float32" or "float16").

    Under torchrun every process takes every world-size-th missing chunk, saves it to the shared
    partial folder, and rank 0 writes the file from the chunks once all are done: the same file as one
    process's (the chunks and their batches do not depend on who embeds them). Every process returns
    once the file is complete. An interrupted run resumes with any number of processes.
    """
    rank, world_size, _ = process_group()
    manifest = {**settings, "chunk_images": features_file.CHUNK_IMAGES}
    partial_folder = out.with_name(f"{out.name}.partial")
    lock = output_lock(out.with_name(f"{out.name}.lock"), out) if rank == 0 else contextlib.nullcontext()
    with lock:
        if rank == 0:
            partial = PartialFeatures(partial_folder, manifest)  # made (or emptied) before the others open it
        barrier()
        if rank != 0:
            partial = PartialFeatures(partial_folder, manifest)
        counts = {split: len(recs) for split, recs in records.items()}
        done = {split: partial.done(split) for split in records}
        barrier()  # every process has listed the finished chunks before any is added
        todo = [
            (split, c) for split in records for c in range(len(chunk_ranges(counts[split]))) if c not in done[split]
        ]
        mine = todo[rank::world_size]
        sizes = {split: chunk_ranges(counts[split]) for split in records}
        share = sum(sizes[split][c][1] - sizes[split][c][0] for split, c in mine)
        label = "extract-features" if world_size == 1 else f"extract-features (process {rank + 1} of {world_size})"
        start = time.perf_counter()
        with _ui.progress_bar(label, share, enabled=progress and rank == 0) as advance:
            for split, recs in records.items():
                chunks = [c for s, c in mine if s == split]
                _extract_split(how, ReidImages(recs, folder, how.transform), split, chunks, partial, advance)
        barrier()  # every chunk is saved
        seconds = time.perf_counter() - start
        extracted = sum(sizes[split][c][1] - sizes[split][c][0] for split, c in todo)  # by all the processes
        resumed = sum(len(d) for d in done.values())
        not_finite: list[str] = []
        if rank == 0:
            labels = {
                split: (
                    [r.path for r in recs],
                    np.array([r.pid for r in recs], np.int64),
                    np.array([r.camid for r in recs], np.int64),
                )
                for split, recs in records.items()
            }
            not_finite = assemble_features(out, partial, labels, names, attrs, dtype)
            partial.remove()
    barrier()  # the file is complete
    return ExtractionRun(extracted, seconds, resumed, not_finite)
