"""HDF5 helpers shared by the labels file and the features file.

Both are written under a temporary name and renamed when complete, so a file under its final name is
always finished; both store their metadata as attributes, read back as plain Python values.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from ._files import output_error, prepare_folder, stale_temporaries
from .errors import DropError

STR = h5py.string_dtype("utf-8")


def created_timestamp() -> str:
    """Now in ISO 8601 UTC, or ``$SOURCE_DATE_EPOCH`` when set (reproducible files)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def plain_attrs(attrs: h5py.AttributeManager) -> dict:
    """HDF5 attributes as plain Python values (str, int, float, lists)."""
    return {key: _plain(value) for key, value in attrs.items()}


def read_strings(dataset: h5py.Dataset) -> list[str]:
    """A 1-D UTF-8 string dataset as a list of str."""
    return dataset.asstr()[()].tolist()


def read_checked(dataset: h5py.Dataset, selection, path: Path, hint: str) -> np.ndarray:
    """``dataset[selection]``, or one DropError line when the file is damaged (a chunk that no longer
    decompresses, a truncated file): HDF5 reports it as a bare OSError."""
    try:
        return dataset[selection]
    except OSError as e:
        raise DropError(f"{path} is damaged: cannot read {dataset.name} ({e}).", hint=hint) from None


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


class AtomicH5Writer:
    """Opens ``.<name>.<pid>.tmp`` beside ``path`` with ``attrs`` set; :meth:`commit` renames it to ``path``,
    and leaving the ``with`` block on an exception (or :meth:`abort`) deletes it."""

    def __init__(self, path: str | Path, attrs: dict):
        self.path = Path(path)
        prepare_folder(self.path.parent)
        for stale in stale_temporaries(self.path):
            stale.unlink(missing_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self._file = h5py.File(self._tmp, "w", track_order=False)
        except OSError as e:
            raise output_error(self.path, e) from None
        for key, value in attrs.items():
            self._file.attrs[key] = np.array(value, dtype=STR) if isinstance(value, (list, tuple)) else value

    @property
    def file(self) -> h5py.File:
        """The open temporary file, to add datasets to."""
        return self._file

    def commit(self) -> Path:
        """Close the file and move it to its final name."""
        self._file.close()
        try:
            os.replace(self._tmp, self.path)
        except OSError as e:
            self._tmp.unlink(missing_ok=True)
            raise output_error(self.path, e) from None
        return self.path

    def abort(self) -> None:
        """Close and delete the unfinished file."""
        if self._file.id.valid:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.abort()
