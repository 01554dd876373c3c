"""The gallery index: a faiss index over one compact vector per gallery image, and the file that keeps it.

The vector of an image is its embedding rows that the search distance compares (foreground and
parts for DROP's), each multiplied by its weight (the part's visibility; 1 for global and
foreground, and for every row with visibility off), laid end to end. The inner product of two such
vectors is ``sum_m w_m cos_m``, the weighted sum of the cosines the exact distance averages (as
``sqrt(2 - 2 cos)``), so the index ranks nearly as the distance does; the exact distance then
re-scores its candidates (:mod:`drop_cli.index.search`).

File layout (HDF5, ``format_version`` 1): dataset ``faiss`` (the serialised faiss index, uint8)
and attributes ``format`` ("drop-index"), ``format_version``, ``features`` (the file it was built
from), ``split``, ``rows`` (the images indexed: the split's first ``rows``), ``paths_sha256`` and
``content_sha256`` (of those rows' paths and of a sample of their embeddings: the check that a
features file is the one indexed, or that file grown), ``checkpoint_sha256``, ``names``,
``distance``, ``visibility``, ``factory``, ``dim``, ``train_images``, ``created``, ``drop_version``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._h5 import AtomicH5Writer, created_timestamp, plain_attrs
from .._version import __version__
from ..errors import DropError
from ..evaluation.scoring import Setting, make_setting, row_set, row_weights
from ..features.rows import SplitRows
from ._faiss import default_factory, faiss_module

FORMAT = "drop-index"
FORMAT_VERSION = 1
_CONTENT_SAMPLE = 64  # embedding rows hashed into content_sha256


def index_path(features: str | Path) -> Path:
    """Where `drop index` writes the index of a features file by default, and where `drop search` looks."""
    return Path(features).expanduser().with_suffix(".index")


class GalleryIndex:
    """A faiss index over the first :attr:`rows` images of a features file's split, with what it was built
    from (``attrs``, see the module docstring).

    Build one with :meth:`new`, :meth:`train` and :meth:`add`, or read one with :meth:`load`.
    """

    def __init__(self, index: Any, attrs: dict, path: Path | None = None):
        self.index, self.attrs, self.path = index, attrs, path

    @property
    def rows(self) -> int:
        return int(self.index.ntotal)

    @property
    def setting(self) -> Setting:
        """The distance the index approximates (no re-ranking)."""
        return make_setting(self.attrs["distance"], bool(self.attrs["visibility"]))

    @classmethod
    def new(cls, gallery: SplitRows, setting: Setting, factory: str | None, images: int) -> GalleryIndex:
        """An empty, untrained index for a features file's split under ``setting``'s distance (``factory``:
        a faiss index_factory string, None for the default for ``images`` images)."""
        faiss = faiss_module()
        file, names = gallery.file, gallery.file.names
        vector_dim = len(row_set(setting, names).rows) * gallery.shape[2]
        chosen = factory or default_factory(vector_dim, images)
        try:
            index = faiss.index_factory(vector_dim, chosen, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise DropError(
                f"faiss cannot make the index {chosen!r} of {vector_dim}-d vectors "
                f"({str(e).strip().splitlines()[-1]}).",
                hint="Pass a faiss index_factory string that fits the dimension, e.g. --factory Flat.",
            ) from None
        attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "features": str(file.path.resolve()),
            "split": gallery.split,
            "checkpoint_sha256": str(file.attrs.get("checkpoint_sha256", "")),
            "names": list(names),
            "distance": setting.distance,
            "visibility": setting.visibility,
            "factory": chosen,
            "default_factory": factory is None,
            "dim": vector_dim,
            "train_images": 0,
        }
        return cls(index, attrs)

    @classmethod
    def load(cls, path: str | Path) -> GalleryIndex:
        """Read an index file; a DropError if it is not one."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise DropError(f"index {path} not found.", hint="Build it with `drop index FEATURES.h5`.")
        try:
            with h5py.File(path, "r") as f:
                attrs = plain_attrs(f.attrs)
                data = f["faiss"][()] if attrs.get("format") == FORMAT else None
        except (OSError, KeyError) as e:
            raise DropError(
                f"{path} is not a readable index file ({e}).", hint="Build it again with `drop index`."
            ) from None
        if data is None or attrs.get("format_version") != FORMAT_VERSION:
            raise DropError(
                f"{path} is not a drop index (format {attrs.get('format')!r}, version {attrs.get('format_version')!r}).",
                hint="Build it again with `drop index FEATURES.h5 --rebuild`.",
            )
        return cls(faiss_module().deserialize_index(data), attrs, path)

    def save(self, path: str | Path) -> Path:
        """Write the index file under a temporary name, then rename it into place."""
        attrs = {**self.attrs, "rows": self.rows, "created": created_timestamp(), "drop_version": __version__}
        data = faiss_module().serialize_index(self.index)
        with AtomicH5Writer(Path(path).expanduser(), attrs) as writer:
            writer.file.create_dataset("faiss", data=data)
            return writer.commit()

    def require_setting(self, asked: Setting, hint: str) -> None:
        """A DropError unless the index serves ``asked``'s distance (re-ranking aside)."""
        if make_setting(asked.distance, asked.visibility) != self.setting:
            raise DropError(
                f"index {self.path} serves distance {self.setting.distance} (visibility "
                f"{self.setting.visibility}), not {asked.distance} (visibility {asked.visibility}).",
                hint=hint,
            )

    def vectors(self, embeddings: np.ndarray, visibility: np.ndarray) -> np.ndarray:
        """[N, dim] float32 index vectors of images with embeddings [N, M, D] and visibility [N, M]."""
        combo = row_set(self.setting, self.attrs["names"])
        weights = row_weights(np.asarray(visibility, np.float32), combo.visibility)[:, combo.index]
        rows = np.asarray(embeddings[:, combo.index], np.float32)
        rows *= weights[:, :, None]
        return rows.reshape(len(rows), -1)

    def train(self, gallery: SplitRows, images: int, stop: int, seed: int = 0) -> None:
        """Train the index (its quantizers) on up to ``images`` of the gallery's first ``stop`` images, drawn
        at random."""
        count = min(images, stop)
        sample = np.sort(np.random.default_rng(seed).choice(stop, count, replace=False))
        self.index.train(self.vectors(gallery.embeddings(sample), gallery.visibility[sample]))
        self.attrs["train_images"] = count

    def add(self, embeddings: np.ndarray, visibility: np.ndarray) -> None:
        """Append images (in gallery order, after the :attr:`rows` already there)."""
        self.index.add(self.vectors(embeddings, visibility))

    def candidates(self, embeddings: np.ndarray, visibility: np.ndarray, count: int) -> np.ndarray:
        """[Nq, count] int64 gallery rows, best first, the index's nearest for each query (-1 where it has
        fewer)."""
        _, found = self.index.search(self.vectors(embeddings, visibility), min(count, max(self.rows, 1)))
        return found.astype(np.int64)

    def check(self, gallery: SplitRows, paths: list[str] | None = None) -> None:
        """A DropError unless ``gallery`` (a split of a features file; ``paths`` its image paths, read when
        not given) holds the images this index was built from, in the same order (it may hold more after
        them)."""
        paths = gallery.file.paths(gallery.split) if paths is None else paths
        where = f"index {self.path}"
        file = gallery.file
        if gallery.split != self.attrs["split"] or tuple(file.names) != tuple(self.attrs["names"]):
            raise DropError(
                f"{where} was built from split {self.attrs['split']} with rows {self.attrs['names']}, not "
                f"{gallery.split} of {file.path}.",
                hint=f"Build an index of this file: `drop index {file.path} --rebuild`.",
            )
        if len(gallery) < self.rows:
            raise DropError(
                f"{where} holds {self.rows:,} images but {file.path} has only {len(gallery):,} in {gallery.split}: "
                "it was built from another features file.",
                hint=f"Build an index of this file: `drop index {file.path} --rebuild`.",
            )
        if str(file.attrs.get("checkpoint_sha256", "")) != self.attrs["checkpoint_sha256"] or fingerprint(
            gallery, paths, self.rows
        ) != {k: self.attrs[k] for k in ("paths_sha256", "content_sha256")}:
            raise DropError(
                f"{where} was built from another features file ({self.attrs['features']}) than {file.path}.",
                hint=f"Pass that file as the gallery, or build an index of this one: `drop index {file.path} "
                "--rebuild`.",
            )


def fingerprint(gallery: SplitRows, paths: list[str], rows: int) -> dict[str, str]:
    """sha256 of the first ``rows`` image paths, and of up to 64 evenly spaced embedding rows among them.

    The paths are taken below the file's dataset folder: `drop embed` re-bases them when it adds images
    from another folder (``x.jpg`` under ``crops/`` becomes ``crops/x.jpg`` under its parent), and the
    images are the same."""
    sample = np.unique(np.linspace(0, max(rows - 1, 0), min(rows, _CONTENT_SAMPLE)).astype(np.int64))
    folder = str(gallery.file.attrs.get("dataset_folder", ""))
    full = (os.path.normpath(os.path.join(folder, p)) for p in paths[:rows])
    return {
        "paths_sha256": hashlib.sha256("\n".join(full).encode()).hexdigest(),
        "content_sha256": hashlib.sha256(gallery.embeddings(sample).tobytes()).hexdigest(),
    }
