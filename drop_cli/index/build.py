"""`drop index`: build a gallery's index, or grow it by the images added to its features file since."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import h5py

from .. import _ui
from ..evaluation.scoring import DEFAULT_DISTANCE, make_setting
from ..features.file import FeatureFile
from ..features.rows import SplitRows
from ._faiss import FLAT_BELOW
from .gallery_index import GalleryIndex, fingerprint, index_path

TRAIN_IMAGES = 2**15  # [ours] a 4-bit quantizer's 16 centroids per sub-vector need far fewer
_ADD_BLOCK = 8192  # images read and added at a time: 80 MB of float16 embeddings at 10 x 512


@dataclass
class IndexResult:
    index: Path
    features: Path
    split: str
    images: int  # in the index now
    added: int  # by this call
    factory: str
    dim: int
    index_bytes: int
    seconds: float
    trained: bool  # False when an existing index grew

    def to_json(self) -> dict:
        return {
            "index": str(self.index),
            "features": str(self.features),
            "split": self.split,
            "images": self.images,
            "added": self.added,
            "trained": self.trained,
            "factory": self.factory,
            "dim": self.dim,
            "index_bytes": self.index_bytes,
            "seconds": round(self.seconds, 3),
        }


def build_index(
    features: str | Path,
    *,
    out: str | Path | None = None,
    split: str = "gallery",
    distance: str | None = None,
    visibility: bool | None = None,
    factory: str | None = None,
    train_images: int = TRAIN_IMAGES,
    rebuild: bool = False,
    upto: int | None = None,
    progress: bool = True,
) -> IndexResult:
    """Index the images of a features file's split for `drop search` (faiss).

    An index already at ``out`` built from this file (or from the first images of it, before it grew)
    is extended by the images after those it holds, without training again; ``rebuild`` starts anew.

    Args:
        out: the index file (default: the features file with suffix ``.index``, where search looks).
        distance, visibility: the search distance the index serves (as `drop evaluate`; default DROP's,
            visibility-weighted, or the existing index's own when it grows).
        factory: a faiss ``index_factory`` string (default: a flat 4-bit product quantizer, see
            ``_faiss.default_factory``).
        train_images: images the quantizer is trained on (drawn at random).
        upto: index only the first ``upto`` images (default: all).
    """
    start = time.perf_counter()
    file = FeatureFile(features)
    out = Path(out).expanduser() if out is not None else index_path(file.path)
    with SplitRows(file, split) as gallery:
        paths = file.paths(split)
        stop = len(gallery) if upto is None else min(upto, len(gallery))
        index = None if rebuild or not out.exists() else GalleryIndex.load(out)
        if index is not None:
            index.check(gallery, paths)
            asked = make_setting(
                distance or index.setting.distance, index.setting.visibility if visibility is None else visibility
            )
            index.require_setting(asked, "Pass --rebuild to index for another distance, or --out for a second index.")
            if index.attrs["default_factory"] and index.attrs["factory"] == "Flat" and stop >= FLAT_BELOW:
                _ui.info(f"{out} has grown past {FLAT_BELOW:,} images: it is built anew as a compact index")
                distance, visibility, index = asked.distance, asked.visibility, None
        trained = index is None
        if index is None:
            setting = make_setting(distance or DEFAULT_DISTANCE, True if visibility is None else visibility)
            index = GalleryIndex.new(gallery, setting, factory, stop)
            if not index.index.is_trained:
                _ui.info(f"Training {index.attrs['factory']} on {min(train_images, stop):,} images of {file.path}")
                index.train(gallery, train_images, stop)
        first = index.rows
        with _ui.progress_bar("Indexing", max(stop - first, 0), enabled=progress) as advance:
            with h5py.File(file.path, "r") as f:
                embeddings = f[split]["embeddings"]
                for block in range(first, stop, _ADD_BLOCK):
                    rows = slice(block, min(block + _ADD_BLOCK, stop))
                    index.add(embeddings[rows], gallery.visibility[rows])
                    advance(rows.stop - rows.start)
        if trained or index.rows != first:
            index.attrs.update(fingerprint(gallery, paths, index.rows))
            index.save(out)
    return IndexResult(
        out,
        file.path,
        split,
        index.rows,
        index.rows - first,
        index.attrs["factory"],
        int(index.attrs["dim"]),
        out.stat().st_size,
        time.perf_counter() - start,
        trained,
    )
