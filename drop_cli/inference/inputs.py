"""The images a user names on the command line: files, folders and lists of paths.

A folder is walked (sub-folders included) for image files, in sorted order; a ``.txt`` or ``.lst``
file lists one path per line (relative to the list's own folder; blank lines and ``#`` comments
skipped). Every image is taken once, in the order given, as an absolute path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2

from ..data.datasets import IMAGE_SUFFIXES, Record, compile_pattern, list_images, parse_names
from ..errors import DropError

LIST_SUFFIXES = (".txt", ".lst")


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files ``inputs`` name (see the module docstring); a DropError for a path that is none
    of these, or when there is no image at all."""
    out: dict[Path, None] = {}
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            found = [path / name for name in list_images(path, recursive=True)]
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found = _listed(path)
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found = [path]
        elif path.exists():
            raise DropError(
                f"{path} is not an image ({', '.join(IMAGE_SUFFIXES)}), a folder or a list of paths ({', '.join(LIST_SUFFIXES)}).",
                hint="Pass image files, folders of them, or a text file with one image path per line.",
            )
        else:
            raise DropError(f"{path} not found.", hint="Pass image files, folders of them, or a list of paths.")
        out.update((p.resolve(), None) for p in found)
    if not out:
        raise DropError(
            f"no images in {', '.join(map(str, inputs)) or 'nothing'}.",
            hint=f"Image files end with {', '.join(IMAGE_SUFFIXES)}.",
        )
    return list(out)


def _listed(listing: Path) -> list[Path]:
    lines = [line.strip() for line in listing.read_text(errors="replace").splitlines()]
    paths = [listing.parent / line for line in lines if line and not line.startswith("#")]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DropError(
            f"{listing}: {len(missing)} listed image(s) not found, e.g. {', '.join(map(str, missing[:3]))}.",
            hint="Paths in a list are relative to the list's folder; fix or remove those lines.",
        )
    return paths


def unreadable(paths: Sequence[Path]) -> list[Path]:
    """The files among ``paths`` no image decoder recognises (empty, truncated headers, other formats)."""
    return [p for p in paths if not cv2.haveImageReader(str(p))]


def common_folder(paths: Sequence[Path]) -> Path:
    """The deepest folder that holds every one of ``paths``."""
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def image_records(paths: Sequence[Path], folder: Path, pattern: str | None = None) -> list[Record]:
    """Records of ``paths`` relative to ``folder``: identity and 0-based camera from ``pattern`` (named
    groups pid and camid, 1-based cameras, searched in the relative path), else -1 for both."""
    names = [p.relative_to(folder).as_posix() for p in paths]
    if pattern is None:
        return [Record(name, -1, -1) for name in names]
    return [
        Record(name, pid, cam - 1)
        for name, pid, cam in parse_names(names, compile_pattern(pattern), folder, "images", True)
    ]
