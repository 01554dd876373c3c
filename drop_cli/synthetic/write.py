"""``write_synthetic``: a whole synthetic set on disk, images and ground truth, written atomically.

The images are rendered in chunks by worker processes (each image is a pure function of its item,
so the bytes do not depend on the number of workers) into a temporary folder, with the ground truth
as a labels file (``ground_truth.h5``: labeler `synthetic`, preset `eight`, image resolution); the
folder is renamed into place once complete, with ``synthetic.json`` recording ids and seed.
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

from .. import _ui
from .._files import output_error, prepare_folder, stale_temporaries
from .._workers import end_with_parent
from ..errors import DatasetError, DropError
from ..labels import LABELERS, LabelWriter
from ..parts import PRESETS
from .canvas import IMAGE_HEIGHT, IMAGE_WIDTH
from .plan import plan
from .render import render

GROUND_TRUTH_FILE = "ground_truth.h5"
_CHUNK = 64  # images per task of a worker


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
        return {
            "folder": str(self.folder),
            "ground_truth": str(self.ground_truth),
            "images": self.images,
            "ids": self.ids,
            "seed": self.seed,
            "already_complete": self.already_complete,
            "seconds": round(self.seconds, 3),
        }


def _render_chunk(items: list, num_ids: int, seed: int, folder: Path) -> list[np.ndarray]:
    """Render, encode and write a chunk of synthetic images; their ground-truth part maps."""
    truths = []
    for item in items:
        image, parts = render(item, num_ids, seed)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise DropError(
                f"OpenCV could not encode the synthetic image {item.relpath} as JPEG.",
                hint="Check the opencv-python installation (pip install -e . reinstalls it).",
            )
        (folder / item.relpath).write_bytes(jpeg.tobytes())
        truths.append(parts)
    return truths


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def write_synthetic(
    root: str | Path, *, ids: int = 100, seed: int = 0, workers: int = 0, overwrite: bool = False, progress: bool = True
) -> SyntheticResult:
    """Write the synthetic set of (``ids``, ``seed``) into ``<root>/synthetic/`` with ``workers`` processes
    (0 or 1: this process). An existing set of the same ids and seed is left as it is; another one is
    replaced only with ``overwrite``."""
    start = time.perf_counter()
    items = plan(ids, seed)
    root = Path(root).expanduser()
    folder = root / "synthetic"
    stamp = {"ids": ids, "seed": seed, "images": len(items)}
    stamp_file = folder / "synthetic.json"
    counts = {s: sum(1 for it in items if it.split == s) for s in ("train", "query", "gallery")}
    if folder.exists():
        existing = json.loads(stamp_file.read_text()) if stamp_file.is_file() else None
        if existing == stamp and (folder / GROUND_TRUTH_FILE).is_file() and not overwrite:
            return SyntheticResult(
                folder,
                folder / GROUND_TRUTH_FILE,
                counts,
                ids,
                seed,
                time.perf_counter() - start,
                already_complete=True,
            )
        if not overwrite:
            raise DatasetError(
                f"{folder} already exists"
                + (
                    f" with ids={existing['ids']} seed={existing['seed']}."
                    if existing
                    else " and was not made by drop."
                ),
                hint="Pass --overwrite to replace it, or choose another ROOT.",
            )
    prepare_folder(root)
    for stale in stale_temporaries(folder):  # left by a killed make-synthetic
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".{folder.name}.{os.getpid()}.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        for sub in ("bounding_box_train", "query", "bounding_box_test"):
            (tmp / sub).mkdir(parents=True)
    except OSError as e:
        raise output_error(root, e) from None
    relpaths = [it.relpath for it in items]
    attrs = {
        "dataset": "synthetic",
        "preset": "eight",
        "parts": list(PRESETS["eight"]),
        "labeler": "synthetic",
        "labeler_version": LABELERS["synthetic"].version,
    }
    try:
        with (
            _ui.progress_bar("make-synthetic", len(items), enabled=progress) as advance,
            LabelWriter(tmp / GROUND_TRUTH_FILE, relpaths, IMAGE_HEIGHT, IMAGE_WIDTH, attrs) as writer,
        ):
            chunks = list(_chunks(items, _CHUNK))
            if workers <= 1:
                results = (_render_chunk(c, ids, seed, tmp) for c in chunks)
                _write_truths(writer, results, advance)
            else:
                with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=end_with_parent) as pool:
                    results = pool.map(
                        _render_chunk, chunks, [ids] * len(chunks), [seed] * len(chunks), [tmp] * len(chunks)
                    )
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
