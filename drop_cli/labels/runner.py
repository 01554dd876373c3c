"""Label every image of a dataset into one labels file: parallel, resumable, never half-written.

Work is cut into blocks of `BLOCK_SIZE` images. A worker labels a block and saves it as
``<out>.partial/block-NNNNNN.npz`` under a temporary name, then renames it, so a block on disk is
always complete. A run that was interrupted (Ctrl-C, kill -9, a full disk) and started again skips
the blocks already there. When every block exists they are assembled, in order, into the labels
file, which is itself written under a temporary name and renamed (`LabelWriter`). The partial
folder's ``manifest.json`` records the settings and the image list; blocks from other settings are
discarded rather than mixed in.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from .._files import atomic_path, ensure_space, folder_bytes, output_error, output_lock, prepare_folder
from .._partial import finished_chunks, open_partial
from .._workers import end_with_parent
from ..errors import DiskError, DropError, LabelsError
from ..parts import part_names
from .base import FLAG_NAMES, FLAG_UNREADABLE, LabelResult
from .file import LabelFile, LabelWriter
from .labelers import LabelerSpec

BLOCK_SIZE = 64


@dataclass
class LabelSummary:
    """What a labelling run produced, per split."""

    path: Path
    images: dict[str, int]
    flagged: dict[str, int]
    part_share: dict[str, list[float]]  # split -> share of all pixels per label value (0 = background)
    flagged_examples: dict[str, list[str]] = field(default_factory=dict)  # flag name -> first paths
    flag_counts: dict[str, int] = field(default_factory=dict)
    resumed_blocks: int = 0
    already_complete: bool = False


# ----------------------------------------------------------------------------- one image


def read_image(path: Path) -> np.ndarray | None:
    """The image as RGB uint8, or None when it is missing, corrupt or a truncated JPEG."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    # A JPEG ends with the EOI marker; entropy-coded data never contains FF D9, so its absence in the
    # tail means the file was cut short (OpenCV would decode the rest as grey and only warn).
    if data[:2].tobytes() == b"\xff\xd8" and data[-1024:].tobytes().rfind(b"\xff\xd9") == -1:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def label_one(labeler, folder: Path, relpath: str, height: int, width: int) -> LabelResult:
    image = read_image(folder / relpath)
    if image is None:
        return LabelResult(np.zeros((height, width), np.uint8), 0.0, FLAG_UNREADABLE)
    return labeler.label(image, relpath)


# ----------------------------------------------------------------------------- one block


def _block_file(partial: Path, block: int) -> Path:
    return partial / f"block-{block:06d}.npz"


def label_block(
    labeler, folder: Path, partial: Path, block: int, relpaths: list[str], height: int, width: int, num_labels: int
) -> int:
    """Label ``relpaths`` and save them as block ``block``; returns the number of images."""
    labels = np.zeros((len(relpaths), height, width), np.uint8)
    quality = np.zeros(len(relpaths), np.float32)
    flags = np.zeros(len(relpaths), np.uint8)
    for i, relpath in enumerate(relpaths):
        result = label_one(labeler, folder, relpath, height, width)
        labels[i], quality[i], flags[i] = result.mask, result.quality, result.flags
    counts = np.stack([np.bincount(m.ravel(), minlength=num_labels) for m in labels]).astype(np.int64)
    target = _block_file(partial, block)
    with atomic_path(target, suffix=".npz") as tmp:
        np.savez(tmp, labels=labels, quality=quality, flags=flags, counts=counts)
    return len(relpaths)


_worker: dict = {}


def _init_worker(spec: LabelerSpec, folder: Path, partial: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and lets running blocks finish
    end_with_parent()
    cv2.setNumThreads(1)
    _worker.update(labeler=spec.build(), spec=spec, folder=folder, partial=partial)


def _worker_block(block: int, relpaths: list[str]) -> int:
    spec: LabelerSpec = _worker["spec"]
    return label_block(
        _worker["labeler"],
        _worker["folder"],
        _worker["partial"],
        block,
        relpaths,
        spec.height,
        spec.width,
        len(part_names(spec.preset)) + 1,
    )


# ----------------------------------------------------------------------------- the run


def _manifest(spec: LabelerSpec, dataset: str, relpaths: list[str]) -> dict:
    digest = hashlib.sha256("\n".join(relpaths).encode()).hexdigest()
    return {
        "dataset": dataset,
        "labeler": spec.name,
        "labeler_version": spec.version,
        "preset": spec.preset,
        "height": spec.height,
        "width": spec.width,
        "options": {k: str(v) for k, v in spec.options.items()},
        "block_size": BLOCK_SIZE,
        "images": len(relpaths),
        "paths_sha256": digest,
    }


def _open_partial(partial: Path, manifest: dict) -> set[int]:
    """Create or reuse the partial folder; the blocks already done."""
    open_partial(partial, manifest)
    return finished_chunks(partial, "block", {"labels", "quality", "flags", "counts"})


def check_existing(out: Path, attrs: dict, relpaths: list[str]) -> bool:
    """True when ``out`` already holds exactly these labels; a LabelsError when it holds other ones."""
    if not out.exists():
        return False
    existing = LabelFile(out)
    mismatched = [
        f"{k} {existing.attrs.get(k)!r} (asked for {v!r})" for k, v in attrs.items() if existing.attrs.get(k) != v
    ]
    if not mismatched and existing.paths != relpaths:
        mismatched.append(f"a different image list ({len(existing.paths)} images, the dataset has {len(relpaths)})")
    if mismatched:
        raise LabelsError(
            f"{out} already exists with {', '.join(mismatched)}.",
            hint="Pass --overwrite to replace it, or --out to write another file.",
        )
    return True


def run_labeling(
    folder: Path,
    dataset: str,
    splits: dict[str, list[str]],
    spec: LabelerSpec,
    out: Path,
    workers: int,
    advance: Callable[[int], None] = lambda n: None,
    overwrite: bool = False,
) -> LabelSummary:
    """Label every image of ``splits`` (split -> relpaths, disjoint) into the labels file ``out``.

    Args:
        folder: the dataset folder the paths are relative to.
        workers: processes; 0 labels in this process.
        advance: called with the number of images finished, for a progress bar.
    """
    relpaths = [p for paths in splits.values() for p in paths]
    names = part_names(spec.preset)
    attrs = {
        "dataset": dataset,
        "preset": spec.preset,
        "parts": list(names),
        "labeler": spec.name,
        "labeler_version": spec.version,
        "height": spec.height,
        "width": spec.width,
    }
    if not overwrite and check_existing(out, attrs, relpaths):  # --overwrite: replaced once the new one is complete
        summary = summarise_file(out, splits)
        summary.already_complete = True
        return summary

    with output_lock(out.with_name(f"{out.name}.lock"), out):
        partial = out.with_name(f"{out.name}.partial")
        prepare_folder(out.parent)
        try:
            done = _open_partial(partial, _manifest(spec, dataset, relpaths))
        except OSError as e:
            raise output_error(partial, e) from None
        blocks = {b: relpaths[b * BLOCK_SIZE : (b + 1) * BLOCK_SIZE] for b in range(-(-len(relpaths) // BLOCK_SIZE))}
        todo = [b for b in blocks if b not in done]
        if done:
            advance(sum(len(blocks[b]) for b in done))
        try:
            if workers == 0:
                labeler = spec.build()
                for b in todo:
                    advance(
                        label_block(labeler, folder, partial, b, blocks[b], spec.height, spec.width, len(names) + 1)
                    )
            else:
                _run_pool(folder, partial, spec, {b: blocks[b] for b in todo}, workers, advance)
            summary = _assemble(out, partial, relpaths, splits, spec, attrs, len(blocks))
        except (OSError, DiskError) as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DropError(
                    f"the disk holding {out.parent} is full.",
                    hint="Free some space and run the same command again: finished blocks are kept.",
                ) from None
            raise
        summary.resumed_blocks = len(done)
        shutil.rmtree(partial, ignore_errors=True)
        return summary


def _run_pool(
    folder: Path,
    partial: Path,
    spec: LabelerSpec,
    blocks: dict[int, list[str]],
    workers: int,
    advance: Callable[[int], None],
) -> None:
    pool = ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(spec, folder, partial)
    )
    try:
        futures = [pool.submit(_worker_block, b, paths) for b, paths in blocks.items()]
        for future in as_completed(futures):
            advance(future.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # running blocks finish and are kept for the resume
        raise
    pool.shutdown()


def _assemble(
    out: Path,
    partial: Path,
    relpaths: list[str],
    splits: dict[str, list[str]],
    spec: LabelerSpec,
    attrs: dict,
    num_blocks: int,
) -> LabelSummary:
    num_labels = len(attrs["parts"]) + 1
    counts = np.zeros((len(relpaths), num_labels), np.int64)
    flags = np.zeros(len(relpaths), np.uint8)
    ensure_space(out, folder_bytes(partial))  # the blocks, uncompressed: more than the file needs
    with LabelWriter(out, relpaths, spec.height, spec.width, attrs) as writer:
        for b in range(num_blocks):
            with np.load(_block_file(partial, b)) as z:
                start = b * BLOCK_SIZE
                writer.write(start, z["labels"], z["quality"], z["flags"])
                counts[start : start + len(z["flags"])] = z["counts"]
                flags[start : start + len(z["flags"])] = z["flags"]
        writer.commit()
    return _summary(out, relpaths, splits, counts, flags)


def summarise_file(out: Path, splits: dict[str, list[str]]) -> LabelSummary:
    """The summary of a finished labels file (used when there is nothing left to do)."""
    with LabelFile(out) as labels:
        all_labels = labels.read_all()
        num_labels = len(labels.parts) + 1
        counts = np.stack([np.bincount(m.ravel(), minlength=num_labels) for m in all_labels])
        return _summary(out, labels.paths, splits, counts, labels.all_flags)


def _summary(
    out: Path, relpaths: list[str], splits: dict[str, list[str]], counts: np.ndarray, flags: np.ndarray
) -> LabelSummary:
    index = {p: i for i, p in enumerate(relpaths)}
    images, flagged, share = {}, {}, {}
    for split, paths in splits.items():
        rows = np.fromiter((index[p] for p in paths), np.int64, len(paths))
        images[split] = len(rows)
        flagged[split] = int(np.count_nonzero(flags[rows]))
        total = counts[rows].sum(axis=0)
        share[split] = (total / max(total.sum(), 1)).tolist()
    examples, flag_counts = {}, {}
    for bit, name in FLAG_NAMES.items():
        hits = np.flatnonzero(flags & bit)
        if hits.size:
            flag_counts[name] = int(hits.size)
            examples[name] = [relpaths[i] for i in hits[:5]]
    return LabelSummary(out, images, flagged, share, examples, flag_counts)
