"""The partial folder of a resumable job (prepare-data, extract-features): finished chunks of work,
each an ``.npz`` renamed into place when complete, kept only while the job's settings match."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ._files import write_text


def open_partial(folder: Path, manifest: dict) -> None:
    """Create ``folder`` with ``manifest.json``, or reuse it when its manifest equals ``manifest``;
    a folder left by other settings is emptied rather than mixed in. OSErrors reach the caller."""
    manifest_file = folder / "manifest.json"
    if folder.is_dir():
        try:
            same = json.loads(manifest_file.read_text()) == manifest
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not manifest_file.exists():
        write_text(manifest_file, json.dumps(manifest, indent=1))


def finished_chunks(folder: Path, prefix: str, keys: set[str]) -> set[int]:
    """Indices of the ``<prefix>-NNNNNN.npz`` files that hold every one of ``keys``; unreadable or
    incomplete leftovers are deleted."""
    found = set()
    for path in folder.glob(f"{prefix}-*.npz"):
        try:
            with np.load(path) as z:
                if keys <= set(z.files):
                    found.add(int(path.stem.rsplit("-", 1)[1]))
                    continue
        except (OSError, ValueError, EOFError):
            pass
        path.unlink(missing_ok=True)  # another process of a torchrun group may have deleted it
    return found
