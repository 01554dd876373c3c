"""The features file: a model's test-time embeddings of a dataset's splits in one HDF5 file.

Layout (``format_version`` 1)::

    /<split>/                     one group per split: query, gallery (and train when asked for)
        paths       (N,)          UTF-8 image paths relative to the dataset folder, in dataset order
        pids        (N,)          int64 identities, as the dataset parser gives them
        camids      (N,)          int64 0-based cameras
        embeddings  (N, M, D)     float32 (or float16): rows global, foreground, then the K parts, each
                                  L2-normalised (``forward.test_embeddings``); attribute ``names``
        visibility  (N, M)        float32 in [0, 1]: 1 for global and foreground, then part visibility
        parsing     (N, h, w)     uint8, optional: the predicted label map at a quarter of the input
                                  size (0 = background, 1..K the parts); gzip
    attributes: format_version, names (M), splits, dataset, dataset_folder, checkpoint,
                checkpoint_sha256, recipe (YAML), model (JSON), settings (JSON: what the content
                depends on), height, width, flip_tta, created (ISO 8601, UTC), drop_version

A file is written under a temporary name and renamed once complete (:class:`FeatureWriter`), so a
file under its final name is always finished. Extraction is resumable: chunks of
:data:`CHUNK_IMAGES` images are saved as ``<out>.partial/<split>-NNNNNN.npz`` (each under a
temporary name, then renamed) and reused by a run with the same ``manifest.json``
(:class:`PartialFeatures`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._files import atomic_path, ensure_space, folder_bytes, output_error
from .._h5 import STR, AtomicH5Writer, created_timestamp, plain_attrs, read_checked, read_strings
from .._partial import finished_chunks, open_partial
from .._version import __version__
from ..data.datasets import DATASETS, dataset_folder
from ..errors import DropError

FORMAT_VERSION = 1
CHUNK_IMAGES = 1024
SPLITS = ("train", "query", "gallery")
_ARRAYS = ("paths", "pids", "camids", "embeddings", "visibility")


@dataclass
class SplitFeatures:
    """One split of a features file.

    Attributes:
        paths: N image paths relative to the dataset folder.
        pids: [N] int64 identities.
        camids: [N] int64 cameras.
        embeddings: [N, M, D] float32 or float16, L2-normalised rows (global, foreground, parts).
        visibility: [N, M] float32 in [0, 1].
        parsing: [N, h, w] uint8 predicted label maps, when stored and asked for.
    """

    paths: list[str]
    pids: np.ndarray
    camids: np.ndarray
    embeddings: np.ndarray
    visibility: np.ndarray
    parsing: np.ndarray | None = None


class FeatureFile:
    """Read and check a features file: ``.attrs``, ``.names``, ``.splits`` (split -> images), ``.read(split)``.

    Opening checks the structure (every split has every array, lengths and dimensions agree, the
    same M and D in every split); :meth:`read` also checks that the values are finite. Problems are
    DropErrors that say what to do.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DropError(
                f"{self.path} is a folder, not a features file."
                if self.path.is_dir()
                else f"features file {self.path} not found.",
                hint="Create it with `drop extract-features --checkpoint RUN/last.pt`.",
            )
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = plain_attrs(f.attrs)
                shapes = {
                    split: {name: f[split][name].shape for name in (*_ARRAYS, "parsing") if name in f[split]}
                    for split in f
                    if isinstance(f[split], h5py.Group)
                }
        except OSError as e:
            raise DropError(
                f"{self.path} is not a readable HDF5 file ({e}).",
                hint="Extract the features again with `drop extract-features`.",
            ) from None
        if "names" not in self.attrs:
            raise DropError(
                f"{self.path} is not a drop features file.", hint="Pass a file written by `drop extract-features`."
            )
        if self.attrs.get("format_version") != FORMAT_VERSION:
            raise DropError(
                f"{self.path} has format_version {self.attrs.get('format_version')!r}; this drop reads "
                f"{FORMAT_VERSION}.",
                hint="Extract the features again with `drop extract-features`.",
            )
        self.names: tuple[str, ...] = tuple(self.attrs["names"])
        self.dataset: str = self.attrs.get("dataset", "")
        self.splits = {split: _checked_length(self.path, split, s, len(self.names)) for split, s in shapes.items()}
        dims = {split: s["embeddings"][2] for split, s in shapes.items()}
        if len(set(dims.values())) > 1:
            raise DropError(
                f"{self.path}: the embedding sizes differ between splits ({dims}).",
                hint="Extract the features again with `drop extract-features` (one checkpoint).",
            )
        self.has_parsing = all("parsing" in s for s in shapes.values()) and bool(shapes)

    def require(self, splits: tuple[str, ...]) -> None:
        """A DropError unless every one of ``splits`` is in the file."""
        missing = [s for s in splits if s not in self.splits]
        if missing:
            raise DropError(
                f"{self.path} has no {' and '.join(missing)} split (it holds: {', '.join(self.splits) or 'nothing'}).",
                hint=f"Extract them: `drop extract-features --checkpoint CKPT --splits {','.join(splits)}`.",
            )

    def images_folder(self, root: str | Path | None = None) -> Path:
        """Where the images are: the folder the file records, or under ``root`` when the dataset has
        moved (``root``: the folder that contains the dataset folder, or that folder itself)."""
        if root is None:
            return Path(self.attrs["dataset_folder"])
        return dataset_folder(self.dataset, root) if self.dataset in DATASETS else Path(root).expanduser()

    def paths(self, split: str) -> list[str]:
        """The image paths of ``split`` (relative to the ``dataset_folder`` attribute), without the arrays."""
        self.require((split,))
        with h5py.File(self.path, "r") as f:
            return read_strings(f[split]["paths"])

    def read(self, split: str, parsing: bool = False) -> SplitFeatures:
        """The arrays of ``split``; a DropError if it is missing or has non-finite values."""
        self.require((split,))
        hint = "Extract the features again with `drop extract-features`."
        with h5py.File(self.path, "r") as f:
            group = f[split]
            paths = read_strings(group["paths"])
            out = SplitFeatures(
                paths,
                read_checked(group["pids"], (), self.path, hint).astype(np.int64),
                read_checked(group["camids"], (), self.path, hint).astype(np.int64),
                read_checked(group["embeddings"], (), self.path, hint),
                read_checked(group["visibility"], (), self.path, hint).astype(np.float32),
                read_checked(group["parsing"], (), self.path, hint) if parsing and "parsing" in group else None,
            )
        for name, values in (("embeddings", out.embeddings), ("visibility", out.visibility)):
            bad = _non_finite_rows(values)
            if bad.size:
                raise DropError(
                    f"{self.path}: the {split} {name} of {bad.size} image(s) are NaN or infinite, e.g. "
                    f"{', '.join(paths[i] for i in bad[:3])}.",
                    hint="The model produced non-finite values: check its training loss, "
                    "then extract the features again.",
                )
        if out.visibility.size and not (out.visibility.min() >= 0 and out.visibility.max() <= 1):
            raise DropError(
                f"{self.path}: {split} visibility must be in [0, 1], got values in "
                f"[{out.visibility.min()}, {out.visibility.max()}].",
                hint="Extract the features again with `drop extract-features`.",
            )
        return out


def _non_finite_rows(values: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``values`` [N, ...] with a NaN or infinite value, checked a block of rows at a
    time (the check of a whole MSMT17 gallery at once would allocate a 1 GB mask)."""
    flat = values.reshape(len(values), -1)
    step = max(1, 2**24 // max(flat.shape[1], 1))
    found = [np.flatnonzero(~np.isfinite(flat[s : s + step]).all(axis=1)) + s for s in range(0, len(flat), step)]
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _checked_length(path: Path, split: str, shapes: dict[str, tuple], num_rows: int) -> int:
    """The number of images of one split, after checking that its arrays agree."""
    missing = [name for name in _ARRAYS if name not in shapes]
    hint = "Extract the features again with `drop extract-features`."
    if missing:
        raise DropError(f"{path}: split {split} lacks {', '.join(missing)}.", hint=hint)
    lengths = {name: shape[0] for name, shape in shapes.items()}
    embeddings, visibility = shapes["embeddings"], shapes["visibility"]
    if len(set(lengths.values())) > 1:
        raise DropError(f"{path}: the arrays of split {split} differ in length ({lengths}).", hint=hint)
    if len(embeddings) != 3 or embeddings[1] != num_rows or visibility != embeddings[:2]:
        raise DropError(
            f"{path}: split {split} has embeddings {embeddings} and visibility {visibility}, expected "
            f"(N, {num_rows}, D) and (N, {num_rows}) for the {num_rows} row names.",
            hint=hint,
        )
    return lengths["paths"]


def read_features(
    path: str | Path, splits: tuple[str, ...] = ("query", "gallery"), parsing: bool = False
) -> dict[str, SplitFeatures]:
    """``{split: SplitFeatures}`` for ``splits`` of a features file (checked, see :class:`FeatureFile`)."""
    file = FeatureFile(path)
    file.require(splits)
    return {split: file.read(split, parsing) for split in splits}


class FeatureWriter(AtomicH5Writer):
    """Write a features file split by split; it appears under its final name only on :meth:`commit`.

    Args:
        path: the final file name.
        names: the M row names (global, foreground, parts).
        attrs: file attributes (format_version, names, splits, created and drop_version are added).
    """

    def __init__(self, path: Path, names: tuple[str, ...], attrs: dict):
        super().__init__(
            path,
            {
                **attrs,
                "format_version": FORMAT_VERSION,
                "names": list(names),
                "created": created_timestamp(),
                "drop_version": __version__,
            },
        )
        self.names = names

    def add_split(
        self,
        split: str,
        paths: list[str],
        pids: np.ndarray,
        camids: np.ndarray,
        embed_dim: int,
        dtype: str,
        parsing_size: tuple[int, int] | None,
    ) -> None:
        """Create the split's group with its labels; :meth:`write` fills the features."""
        n, m = len(paths), len(self.names)
        group = self._file.create_group(split)
        group.create_dataset("paths", data=np.array(paths, dtype=object), dtype=STR)
        group.create_dataset("pids", data=np.asarray(pids, np.int64))
        group.create_dataset("camids", data=np.asarray(camids, np.int64))
        rows = max(1, min(n, 256))
        embeddings = group.create_dataset(
            "embeddings", shape=(n, m, embed_dim), dtype=dtype, chunks=(rows, m, embed_dim) if n else None
        )
        embeddings.attrs["names"] = np.array(self.names, dtype=STR)
        group.create_dataset("visibility", shape=(n, m), dtype=np.float32)
        if parsing_size is not None:
            group.create_dataset(
                "parsing",
                shape=(n, *parsing_size),
                dtype=np.uint8,
                compression="gzip",
                compression_opts=4,
                chunks=(rows, *parsing_size) if n else None,
            )

    def write(
        self, split: str, start: int, embeddings: np.ndarray, visibility: np.ndarray, parsing: np.ndarray | None
    ) -> None:
        """Store images ``start .. start + len(embeddings)`` of ``split``."""
        group = self._file[split]
        stop = start + len(embeddings)
        group["embeddings"][start:stop] = embeddings
        group["visibility"][start:stop] = visibility
        if parsing is not None and "parsing" in group:
            group["parsing"][start:stop] = parsing


def write_features(
    path: str | Path,
    splits: dict[str, Any],
    names: tuple[str, ...],
    attrs: dict | None = None,
    dtype: str = "float32",
    paths: dict[str, list[str]] | None = None,
) -> Path:
    """Write a features file from arrays, :data:`CHUNK_IMAGES` images at a time, and rename it into place.

    Args:
        splits: split -> an object with embeddings [N, M, D], visibility [N, M], pids [N] and camids [N]
            (a SplitFeatures, or synthetic ``ClusteredEmbeddings``).
        names: the M row names.
        attrs: file attributes (``splits`` is set from ``splits``).
        paths: split -> image paths (default ``<split>/0000000.jpg`` ...).
    """
    with FeatureWriter(Path(path), names, {**(attrs or {}), "splits": list(splits)}) as writer:
        for split, data in splits.items():
            n = len(data.pids)
            names_of = (paths or {}).get(split) or [f"{split}/{i:07d}.jpg" for i in range(n)]
            writer.add_split(split, names_of, data.pids, data.camids, data.embeddings.shape[2], dtype, None)
            for start in range(0, n, CHUNK_IMAGES):
                rows = slice(start, start + CHUNK_IMAGES)
                writer.write(split, start, data.embeddings[rows], data.visibility[rows], None)
        return writer.commit()


class PartialFeatures:
    """``<out>.partial/``: finished chunks of an interrupted extraction, kept while the settings match.

    A chunk is images ``chunk * CHUNK_IMAGES ..`` of one split, saved as one ``.npz`` (embeddings
    [n, M, D], visibility [n, M], optionally parsing [n, h, w]). The folder's ``manifest.json``
    records the settings; a folder with another manifest is emptied rather than mixed in.
    """

    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        try:
            open_partial(folder, manifest)
        except OSError as e:
            raise output_error(folder, e) from None

    def _file(self, split: str, chunk: int) -> Path:
        return self.folder / f"{split}-{chunk:06d}.npz"

    def done(self, split: str) -> set[int]:
        """The chunks of ``split`` already saved (unreadable leftovers are deleted)."""
        return finished_chunks(self.folder, split, {"embeddings", "visibility"})

    def save(
        self, split: str, chunk: int, embeddings: np.ndarray, visibility: np.ndarray, parsing: np.ndarray | None
    ) -> None:
        """Save one chunk: embeddings [n, M, D], visibility [n, M], parsing [n, h, w] or None."""
        target = self._file(split, chunk)
        arrays: dict[str, Any] = {"embeddings": embeddings, "visibility": visibility}
        if parsing is not None:
            arrays["parsing"] = parsing
        with atomic_path(target, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)

    def load(self, split: str, chunk: int) -> dict[str, np.ndarray]:
        with np.load(self._file(split, chunk)) as z:
            return {name: z[name] for name in z.files}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def chunk_ranges(num_images: int) -> list[tuple[int, int]]:
    """(start, stop) of each chunk of a split of ``num_images`` images."""
    return [(s, min(s + CHUNK_IMAGES, num_images)) for s in range(0, num_images, CHUNK_IMAGES)]


def assemble_features(
    out: Path,
    partial: PartialFeatures,
    labels: dict[str, tuple[list[str], np.ndarray, np.ndarray]],
    names: tuple[str, ...],
    attrs: dict,
    dtype: str,
) -> list[str]:
    """Write the features file ``out`` from the finished chunks of every split, then rename it into place.

    Args:
        labels: split -> (paths, pids [N], camids [N]), in file order.
        names: the M row names.
        attrs: file attributes (see the module docstring).
        dtype: ``float32`` or ``float16`` embeddings (label maps are stored when the chunks have them).

    Returns:
        The paths of images whose embeddings or visibility are not finite (empty when all are).
    """
    not_finite: list[str] = []
    ensure_space(out, folder_bytes(partial.folder))  # the chunks, uncompressed: more than the file needs
    with FeatureWriter(out, names, attrs) as writer:
        for split, (paths, pids, camids) in labels.items():
            for chunk, (start, _stop) in enumerate(chunk_ranges(len(paths))):
                arrays = partial.load(split, chunk)
                if chunk == 0:
                    parsing_size = arrays["parsing"].shape[1:] if "parsing" in arrays else None
                    writer.add_split(split, paths, pids, camids, arrays["embeddings"].shape[2], dtype, parsing_size)
                finite = np.isfinite(arrays["embeddings"]).all(axis=(1, 2)) & np.isfinite(arrays["visibility"]).all(
                    axis=1
                )
                not_finite += [paths[start + i] for i in np.flatnonzero(~finite)]
                writer.write(split, start, arrays["embeddings"], arrays["visibility"], arrays.get("parsing"))
        writer.commit()
    return not_finite


def merge_features(out: Path, sources: list[Path], attrs: dict, dtype: str) -> Path:
    """Write ``out`` with every row of ``sources`` (features files of one model), split by split and file
    by file in order, and rename it into place (``out`` may be one of the sources).

    Paths are made relative to ``attrs["dataset_folder"]``, which must hold every source's images. The
    rows are copied ``CHUNK_IMAGES`` at a time, so the merge holds no whole file in memory.
    """
    files = [FeatureFile(source) for source in sources]
    names = files[0].names
    if any(f.names != names for f in files):
        raise DropError(f"cannot merge features with different rows into {out}: {[f.names for f in files]}.")
    folder = Path(attrs["dataset_folder"])
    splits = list(dict.fromkeys(split for f in files for split in f.splits))
    ensure_space(out, sum(f.path.stat().st_size for f in files))
    with FeatureWriter(out, names, {**attrs, "splits": splits}) as writer:
        for split in splits:
            holding = [f for f in files if split in f.splits]
            paths, pids, camids, dims, sizes = [], [], [], set(), set()
            with_parsing = all(f.has_parsing for f in holding)
            for f in holding:
                base = Path(f.attrs["dataset_folder"])
                with h5py.File(f.path, "r") as h:
                    paths += [(base / p).relative_to(folder).as_posix() for p in read_strings(h[split]["paths"])]
                    pids.append(h[split]["pids"][()])
                    camids.append(h[split]["camids"][()])
                    dims.add(h[split]["embeddings"].shape[2])
                    sizes.add(h[split]["parsing"].shape[1:] if with_parsing else None)
            if len(dims) > 1 or len(sizes) > 1:
                raise DropError(f"cannot merge features of different sizes into {out} ({dims}, {sizes}).")
            writer.add_split(split, paths, np.concatenate(pids), np.concatenate(camids), dims.pop(), dtype, sizes.pop())
            start = 0
            for f in holding:
                with h5py.File(f.path, "r") as h:
                    group, n = h[split], h[split]["embeddings"].shape[0]
                    for first in range(0, n, CHUNK_IMAGES):
                        rows = slice(first, min(first + CHUNK_IMAGES, n))
                        arrays = [
                            read_checked(group[name], rows, f.path, "Make it again.") if use else None
                            for name, use in (("embeddings", True), ("visibility", True), ("parsing", with_parsing))
                        ]
                        writer.write(split, start + first, *arrays)
                    start += n
        writer.commit()
    return out
