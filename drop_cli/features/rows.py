"""Scattered rows of a features file's split, read by byte offset: what a search needs of a large gallery.

h5py reads a chunked dataset a whole chunk at a time, so fetching 500 scattered images from a
million-image gallery through fancy indexing reads 500 chunks of 256 images (over a gigabyte).
The embeddings are stored uncompressed (:class:`~drop_cli.features.file.FeatureWriter`), so each
image's row sits at a known place in the file: the offset of its chunk plus its position in the
chunk. :class:`SplitRows` looks the chunk offsets up once and then reads each row with one
``pread``, several threads at once (nothing mapped, so the process holds only the rows asked for). A compressed or
otherwise unreadable layout falls back to h5py, one sorted selection per call.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import torch

from ..errors import DropError
from .file import FeatureFile

# Rows read by this many threads at once (pread releases the GIL): [ours] measured, 1.7x faster on
# 1,000 scattered rows of a gallery the page cache holds only in part (the misses wait in parallel).
_READERS = 8
_PARALLEL_FROM = 64


class SplitRows:
    """Embeddings [n, M, D] and visibility [n, M] of any rows of one split, without reading the split.

    Attributes:
        file: the FeatureFile.
        split: the split read.
        visibility: [N, M] float32, read whole on opening (4 bytes per row, small beside the embeddings).
    """

    def __init__(self, file: FeatureFile, split: str):
        file.require((split,))
        self.file, self.split = file, split
        with h5py.File(file.path, "r") as f:
            dataset = f[split]["embeddings"]
            self.shape, self.dtype = dataset.shape, np.dtype(dataset.dtype)
            self.visibility = np.asarray(f[split]["visibility"][()], np.float32)
            self._row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
            self._chunk_rows, self._chunk_offsets = _chunk_offsets(dataset)
        self._fd = os.open(file.path, os.O_RDONLY) if self._chunk_offsets is not None else None
        self._staging = np.empty(0, self.dtype)  # the file's rows before conversion, reused call to call
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def embeddings(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """[len(rows), M, D] embeddings of ``rows`` (any order, repeats allowed), in the file's dtype or
        into ``out`` (C-contiguous, of that shape; float32 converts float16 rows on the way, with torch's
        vectorised conversion, several times numpy's speed). Reusing ``out`` call to call saves faulting
        in fresh memory, which costs more than the reading."""
        rows = np.asarray(rows, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise DropError(
                f"{self.file.path}: rows {rows.min()}..{rows.max()} asked of {self.split}, which holds {len(self)}.",
                hint="Build the index again from this file: `drop index FEATURES.h5 --rebuild`.",
            )
        shape = (len(rows), *self.shape[1:])
        if out is None:
            out = np.empty(shape, self.dtype)
        elif out.shape != shape or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous array of shape {shape}, got {out.shape}.")
        if out.dtype == self.dtype:
            self._read(rows, out)
        else:
            if self._staging.size < out.size:
                self._staging = np.empty(out.size, self.dtype)
            staging = self._staging[: out.size].reshape(shape)
            self._read(rows, staging)
            torch.from_numpy(out).copy_(torch.from_numpy(staging))
        return out

    def _read(self, rows: np.ndarray, out: np.ndarray) -> None:
        if self._fd is None:
            unique, inverse = np.unique(rows, return_inverse=True)
            with h5py.File(self.file.path, "r") as f:
                out[:] = f[self.split]["embeddings"][unique][inverse]
            return
        assert self._chunk_offsets is not None and self._fd is not None
        offsets = (self._chunk_offsets[rows // self._chunk_rows] + (rows % self._chunk_rows) * self._row_bytes).tolist()
        buffer = out.reshape(len(rows), -1).view(np.uint8)
        fd, size = self._fd, self._row_bytes

        def read(first: int, step: int = 1) -> bool:
            return all(os.preadv(fd, [buffer[i]], offsets[i]) == size for i in range(first, len(offsets), step))

        if len(offsets) < _PARALLEL_FROM:
            complete = read(0)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_READERS, thread_name_prefix="drop-rows")
            complete = all(self._pool.map(read, range(_READERS), [_READERS] * _READERS))
        if not complete:
            raise DropError(f"{self.file.path} is truncated.", hint="Extract the features again.")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SplitRows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunk_offsets(dataset: h5py.Dataset) -> tuple[int, np.ndarray | None]:
    """(rows per chunk, byte offset of each chunk in row order), or (0, None) where rows cannot be read by
    offset (a compressed or filtered dataset, a chunk never written)."""
    if dataset.compression is not None or dataset.shuffle or dataset.fletcher32 or dataset.scaleoffset:
        return 0, None
    if dataset.chunks is None:
        offset = dataset.id.get_offset()
        return (max(1, dataset.shape[0]), np.array([offset], np.int64)) if offset is not None else (0, None)
    rows = dataset.chunks[0]
    if dataset.chunks[1:] != dataset.shape[1:]:
        return 0, None
    offsets = np.full(-(-dataset.shape[0] // rows), -1, np.int64)
    for i in range(dataset.id.get_num_chunks()):
        info = dataset.id.get_chunk_info(i)
        offsets[info.chunk_offset[0] // rows] = info.byte_offset
    return (rows, offsets) if (offsets >= 0).all() else (0, None)
