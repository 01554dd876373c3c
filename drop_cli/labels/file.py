"""The labels file: every image's body-part map of one dataset in one HDF5 file.

Layout (``format_version`` 1)::

    /paths     (N,)       UTF-8 strings, image paths relative to the dataset folder, in dataset order
    /labels    (N, H, W)  uint8, 0 = background, 1..K = the preset's parts in order;
                          gzip-compressed, chunked by `CHUNK_IMAGES` images
    /quality   (N,)       float32 in [0, 1]: person presence for the pose labeler, 1 for the others
    /flags     (N,)       uint8 bit field, see `FLAG_NAMES` (unreadable, no_person, missing_source)
    attributes: format_version, dataset, preset, parts (K names), labeler, labeler_version,
                height, width, created (ISO 8601, UTC), drop_version, flag_names (JSON)

A file is only ever written under a temporary name and renamed once complete, so a file with the
final name is always finished; `LabelFile` also checks that its datasets agree in length.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from .._h5 import STR, AtomicH5Writer, created_timestamp, plain_attrs, read_checked, read_strings
from .._version import __version__
from ..errors import LabelsError
from .base import FLAG_NAMES

FORMAT_VERSION = 1
CHUNK_IMAGES = 16


def default_label_size(labeler: str) -> tuple[int, int]:
    """The label map size `prepare-data` uses unless told: 256x128 for BPBreID's masks (the input size,
    so that the training targets are exactly BPBreID's), 128x64 for the other labelers."""
    return (256, 128) if labeler == "bpbreid" else (128, 64)


def default_labels_path(
    folder: Path, labeler: str, preset: str, height: int | None = None, width: int | None = None
) -> Path:
    """Where `prepare-data` puts a dataset's labels unless told otherwise: ``labels-<labeler>-<preset>.h5``,
    with ``-<height>x<width>`` when the size is not the labeler's default."""
    size = (height, width) if height and width else default_label_size(labeler)
    suffix = "" if size == default_label_size(labeler) else f"-{size[0]}x{size[1]}"
    return folder / f"labels-{labeler}-{preset}{suffix}.h5"


class LabelFile:
    """Read a labels file: ``len()``, ``.paths``, ``.parts``, ``.attrs``, ``[relpath]`` and ``.quality(relpath)``.

    Use as a context manager. The handle is opened lazily, so an instance can be passed to DataLoader
    worker processes before first use.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise LabelsError(
                f"{self.path} is a folder, not a labels file."
                if self.path.is_dir()
                else f"labels file {self.path} not found.",
                hint="Create it with `drop prepare-data`.",
            )
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = plain_attrs(f.attrs)
                self.paths = read_strings(f["paths"])
                lengths = {name: f[name].shape[0] for name in ("labels", "quality", "flags")}
                self._quality = f["quality"][()]
                self._flags = f["flags"][()]
        except (OSError, KeyError) as e:
            raise LabelsError(
                f"{self.path} is not a complete drop labels file ({e}).",
                hint="Delete it and run `drop prepare-data` again.",
            ) from None
        if set(lengths.values()) != {len(self.paths)}:
            raise LabelsError(
                f"{self.path} is incomplete: {len(self.paths)} paths but datasets of lengths {lengths}.",
                hint="Delete it and run `drop prepare-data` again.",
            )
        self.parts: tuple[str, ...] = tuple(self.attrs["parts"])
        self.height, self.width = int(self.attrs["height"]), int(self.attrs["width"])
        self._index = {p: i for i, p in enumerate(self.paths)}
        self._file: h5py.File | None = None
        self._opened_by: int | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, relpath: str) -> bool:
        return relpath in self._index

    def __enter__(self) -> LabelFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict:  # an open HDF5 handle never crosses a process boundary
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def _labels(self) -> h5py.Dataset:
        if self._file is None or self._opened_by != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._opened_by = os.getpid()
        return self._file["labels"]

    def _remake_hint(self) -> str:
        return (
            f"Make it again: `drop prepare-data {self.attrs.get('dataset', 'DATASET')} --labeler "
            f"{self.attrs.get('labeler')} --overwrite`."
        )

    def index(self, relpath: str) -> int:
        try:
            return self._index[relpath]
        except KeyError:
            raise LabelsError(
                f"{relpath} has no labels in {self.path}.", hint="Run `drop prepare-data` for this dataset again."
            ) from None

    def __getitem__(self, relpath: str) -> np.ndarray:
        """The (H, W) uint8 label map of one image."""
        return read_checked(self._labels(), self.index(relpath), self.path, self._remake_hint())

    def read_all(self) -> np.ndarray:
        """Every label map, (N, H, W) uint8."""
        return read_checked(self._labels(), (), self.path, self._remake_hint())

    def quality(self, relpath: str) -> float:
        return float(self._quality[self.index(relpath)])

    def flags(self, relpath: str) -> int:
        return int(self._flags[self.index(relpath)])

    @property
    def all_quality(self) -> np.ndarray:
        return self._quality

    @property
    def all_flags(self) -> np.ndarray:
        return self._flags


class LabelWriter(AtomicH5Writer):
    """Write a labels file block by block; it appears under its final name only when `commit` is called.

    Args:
        path: the final file name.
        paths: every image path, in file order.
        height, width: label map size.
        attrs: dataset, preset, parts, labeler, labeler_version (the rest is filled in here).
    """

    def __init__(self, path: str | Path, paths: list[str], height: int, width: int, attrs: dict):
        super().__init__(
            path,
            {
                "format_version": FORMAT_VERSION,
                "height": height,
                "width": width,
                "created": created_timestamp(),
                "drop_version": __version__,
                "flag_names": json.dumps({str(k): v for k, v in FLAG_NAMES.items()}),
                **attrs,
            },
        )
        n = len(paths)
        self._file.create_dataset("paths", data=np.array(paths, dtype=object), dtype=STR, track_times=False)
        self._labels = self._file.create_dataset(
            "labels",
            shape=(n, height, width),
            dtype=np.uint8,
            chunks=(min(CHUNK_IMAGES, max(n, 1)), height, width),
            compression="gzip",
            compression_opts=4,
            track_times=False,
        )
        self._quality = self._file.create_dataset("quality", shape=(n,), dtype=np.float32, track_times=False)
        self._flags = self._file.create_dataset("flags", shape=(n,), dtype=np.uint8, track_times=False)

    def write(self, start: int, labels: np.ndarray, quality: np.ndarray, flags: np.ndarray) -> None:
        """Store images ``start .. start + len(labels)``."""
        stop = start + len(labels)
        self._labels[start:stop] = labels
        self._quality[start:stop] = quality
        self._flags[start:stop] = flags
