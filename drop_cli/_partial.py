"""The partial folder of a resumable job (prepare-data, extract-features): finished chunks of work,
each an ``.npz`` renamed into place when complete, kept only while the job's settings match."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np


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
        tmp = manifest_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, manifest_file)


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
        path.unlink()
    return found
