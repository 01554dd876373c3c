"""Parsers for the standard ReID benchmark layouts (Market-1501, DukeMTMC-reID, Occluded-Duke,
Occluded-REID, P-DukeMTMC-reID, Partial-REID, MSMT17).

Each parser turns a dataset folder into three lists of :class:`Record` (train, query, gallery) with
paths relative to the dataset folder. Conventions, the same for every layout:

- camera ids are 0-based (``c1`` in a file name is camid 0);
- pid -1 marks junk images and is dropped; pid 0 (Market-1501 distractors) is kept in the gallery;
- train pids are relabelled 0..C-1 in sorted order of the original ids; query/gallery pids are kept;
- files are listed with ``os.scandir`` and sorted, so every run sees the same order.

A user may point ``root`` at the folder that contains the dataset folder (as BPBreID's ``data.root``)
or at the dataset folder itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError, lookup

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DUKE_PATTERN = re.compile(r"([-\d]+)_c(\d+)")


@dataclass(frozen=True)
class Record:
    """One image: ``path`` relative to the dataset folder, identity ``pid`` and 0-based ``camid``."""

    path: str
    pid: int
    camid: int


@dataclass
class Dataset:
    """A parsed dataset: its folder and the three splits."""

    name: str
    folder: Path
    train: list[Record] = field(default_factory=list)
    query: list[Record] = field(default_factory=list)
    gallery: list[Record] = field(default_factory=list)

    @property
    def splits(self) -> dict[str, list[Record]]:
        return {"train": self.train, "query": self.query, "gallery": self.gallery}

    def all_records(self) -> list[tuple[str, Record]]:
        """(split, record) for every image once, in train, query, gallery order."""
        seen: set[str] = set()
        out = []
        for split, records in self.splits.items():
            for rec in records:
                if rec.path not in seen:
                    seen.add(rec.path)
                    out.append((split, rec))
        return out


# ----------------------------------------------------------------------------- listing helpers


def list_images(folder: Path, recursive: bool = False) -> list[str]:
    """Image file paths below ``folder``, relative to it, sorted."""
    out: list[str] = []
    stack = [("", folder)]
    while stack:
        prefix, current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES):
                    out.append(prefix + entry.name)
                elif recursive and entry.is_dir():
                    stack.append((f"{prefix}{entry.name}/", Path(entry.path)))
    out.sort()
    return out


def _require_dirs(folder: Path, subdirs: Iterable[str], dataset: str) -> None:
    missing = [d for d in subdirs if not (folder / d).is_dir()]
    if missing:
        raise DatasetError(
            f"{dataset}: expected folder(s) {', '.join(str(folder / d) for d in missing)} not found.",
            hint=f"Point --root at the folder that contains {folder.name}/ (or at {folder.name}/ itself).",
        )


def parse_names(
    names: list[str], pattern: re.Pattern, where: Path, dataset: str, group_names: bool = False
) -> list[tuple[str, int, int]]:
    """(name, pid, 1-based camid) per name; a DatasetError with count and examples for names that do not match."""
    out, bad = [], []
    for name in names:
        m = pattern.search(name)
        if m is None:
            bad.append(name)
            continue
        pid, cam = (m.group("pid"), m.group("camid")) if group_names else m.groups()[:2]
        out.append((name, int(pid), int(cam)))
    if bad:
        raise DatasetError(
            f"{dataset}: {len(bad)} file name(s) in {where} do not match the pattern {pattern.pattern!r}, "
            f"e.g. {', '.join(bad[:3])}.",
            hint="Remove or rename them, or use the `folder` dataset with your own --pattern.",
        )
    return out


def _relabel(records: list[Record]) -> list[Record]:
    """Train pids -> 0..C-1 in sorted order of the original ids."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [Record(r.path, mapping[r.pid], r.camid) for r in records]


def _duke_split(
    folder: Path,
    subdir: str,
    dataset: str,
    pattern: re.Pattern = DUKE_PATTERN,
    group_names: bool = False,
    recursive: bool = False,
) -> list[Record]:
    where = folder / subdir
    names = list_images(where, recursive=recursive)
    parsed = parse_names(names, pattern, where, dataset, group_names)
    return [Record(f"{subdir}/{name}", pid, cam - 1) for name, pid, cam in parsed if pid != -1]


# ----------------------------------------------------------------------------- layouts


def _market_like(name: str) -> Callable[[Path], Dataset]:
    """Market-1501, DukeMTMC-reID, Occluded-Duke and the synthetic set share one layout."""

    def parse(folder: Path) -> Dataset:
        subdirs = ("bounding_box_train", "query", "bounding_box_test")
        _require_dirs(folder, subdirs, name)
        train, query, gallery = (_duke_split(folder, d, name) for d in subdirs)
        return Dataset(name, folder, _relabel(train), query, gallery)

    return parse


def _occluded_reid(folder: Path) -> Dataset:
    """Occluded-REID: query = occluded bodies (camid 0), gallery = whole bodies (camid 1); no train split."""
    subdirs = ("occluded_body_images", "whole_body_images")
    _require_dirs(folder, subdirs, "occluded_reid")
    pattern = re.compile(r"(?:^|/)(\d+)_[^/]*$")

    def split(subdir: str, camid: int) -> list[Record]:
        names = list_images(folder / subdir, recursive=True)
        out = []
        for name in names:
            m = pattern.search(name)
            if m is None:
                raise DatasetError(
                    f"occluded_reid: file {folder / subdir / name} does not start with '<pid>_'.",
                    hint="Occluded-REID names images <pid>_<n>.tif inside one folder per identity.",
                )
            out.append(Record(f"{subdir}/{name}", int(m.group(1)), camid))
        return out

    return Dataset("occluded_reid", folder, [], split(subdirs[0], 0), split(subdirs[1], 1))


def _partial_reid(folder: Path) -> Dataset:
    """Partial-REID: query = partial bodies (camid 0), gallery = whole bodies (camid 1); test only."""
    subdirs = ("partial_body_images", "whole_body_images")
    _require_dirs(folder, subdirs, "partial_reid")
    pattern = re.compile(r"^(\d+)_")

    def split(subdir: str, camid: int) -> list[Record]:
        names = list_images(folder / subdir)
        parsed = [(n, pattern.search(n)) for n in names]
        bad = [n for n, m in parsed if m is None]
        if bad:
            raise DatasetError(
                f"partial_reid: {len(bad)} file name(s) in {folder / subdir} do not start with '<pid>_', "
                f"e.g. {', '.join(bad[:3])}."
            )
        return [Record(f"{subdir}/{n}", int(m.group(1)), camid) for n, m in parsed if m is not None]

    return Dataset("partial_reid", folder, [], split(subdirs[0], 0), split(subdirs[1], 1))


def _p_dukemtmc_reid(folder: Path) -> Dataset:
    """P-DukeMTMC-reID: ``{train,test}/{occluded_body_images,whole_body_images}/<pid>/*.jpg``.

    The pid is the identity folder; the camera comes from ``_c<n>`` in the file name when present,
    else occluded = camid 0 and whole = camid 1. Test occluded images are the query, test whole the gallery.
    """
    kinds = ("occluded_body_images", "whole_body_images")
    _require_dirs(folder, [f"{s}/{k}" for s in ("train", "test") for k in kinds], "p_dukemtmc_reid")

    def split(subdir: str, default_cam: int) -> list[Record]:
        out = []
        for name in list_images(folder / subdir, recursive=True):
            pid_dir, _, filename = name.partition("/")
            if not pid_dir.isdigit() or not filename:
                raise DatasetError(
                    f"p_dukemtmc_reid: {folder / subdir / name} is not inside a numeric identity folder.",
                    hint="Expected <split>/<kind>/<pid>/<image>.jpg.",
                )
            m = DUKE_PATTERN.search(filename)
            camid = int(m.group(2)) - 1 if m else default_cam
            out.append(Record(f"{subdir}/{name}", int(pid_dir), camid))
        return out

    train = split("train/occluded_body_images", 0) + split("train/whole_body_images", 1)
    return Dataset(
        "p_dukemtmc_reid",
        folder,
        _relabel(train),
        split("test/occluded_body_images", 0),
        split("test/whole_body_images", 1),
    )


def _msmt17(folder: Path) -> Dataset:
    """MSMT17 V1 or V2: split lists ``list_{train,val,query,gallery}.txt`` of ``<path> <pid>`` lines.

    Train = train + val (the usual protocol). The camera is the third ``_`` field of the file name.
    """
    image_dirs = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
    train_dir, test_dir = image_dirs.get(folder.name, image_dirs["MSMT17_V1"])
    if not (folder / train_dir).is_dir():  # a renamed folder: find out which version it is
        train_dir, test_dir = next((v for v in image_dirs.values() if (folder / v[0]).is_dir()), (train_dir, test_dir))
    lists = [f"list_{s}.txt" for s in ("train", "val", "query", "gallery")]
    missing = [n for n in lists if not (folder / n).is_file()]
    if missing:
        raise DatasetError(
            f"msmt17: split list(s) {', '.join(missing)} not found in {folder}.",
            hint="MSMT17 ships list_train.txt, list_val.txt, list_query.txt and list_gallery.txt.",
        )
    _require_dirs(folder, (train_dir, test_dir), "msmt17")

    def read(list_name: str, image_dir: str) -> list[Record]:
        out = []
        for lineno, line in enumerate((folder / list_name).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                path, pid = line.split()
                camid = int(Path(path).name.split("_")[2]) - 1
            except (ValueError, IndexError):
                raise DatasetError(
                    f"msmt17: {list_name} line {lineno} is not '<path> <pid>' with an MSMT17 file name: {line!r}."
                ) from None
            out.append(Record(f"{image_dir}/{path}", int(pid), camid))
        return out

    train = read("list_train.txt", train_dir) + read("list_val.txt", train_dir)
    return Dataset(
        "msmt17", folder, _relabel(train), read("list_query.txt", test_dir), read("list_gallery.txt", test_dir)
    )


def compile_pattern(pattern: str) -> re.Pattern:
    """``--pattern``: a regular expression with named groups ``pid`` and ``camid``, or one DatasetError line."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise DatasetError(f"--pattern {pattern!r} is not a valid regular expression ({e}).") from None
    if not {"pid", "camid"} <= set(regex.groupindex):
        raise DatasetError(
            f"--pattern {pattern!r} must have named groups (?P<pid>...) and (?P<camid>...).",
            hint=r"For Market-style names use --pattern '(?P<pid>[-\d]+)_c(?P<camid>\d)'.",
        )
    return regex


def folder_dataset(folder: Path, pattern: str) -> Dataset:
    """Any tree with ``train/`` (optional), ``query/`` and ``gallery/`` sub-folders.

    ``pattern`` is a regular expression with named groups ``pid`` and ``camid`` (1-based, as in file
    names), searched in each image's path relative to its split folder (sub-folders are walked).
    """
    regex = compile_pattern(pattern)
    _require_dirs(folder, ("query", "gallery"), "folder")
    train = (
        _duke_split(folder, "train", "folder", regex, group_names=True, recursive=True)
        if (folder / "train").is_dir()
        else []
    )
    query, gallery = (
        _duke_split(folder, s, "folder", regex, group_names=True, recursive=True) for s in ("query", "gallery")
    )
    return Dataset("folder", folder, _relabel(train), query, gallery)


# Dataset key -> (folder name inside --root, parser). `folder` is separate: it needs a pattern.
DATASETS: dict[str, tuple[str, Callable[[Path], Dataset]]] = {
    "market1501": ("Market-1501-v15.09.15", _market_like("market1501")),
    "dukemtmcreid": ("DukeMTMC-reID", _market_like("dukemtmcreid")),
    "occluded_duke": ("Occluded_Duke", _market_like("occluded_duke")),
    "occluded_reid": ("Occluded_REID", _occluded_reid),
    "p_dukemtmc_reid": ("P-DukeMTMC-reID", _p_dukemtmc_reid),
    "partial_reid": ("Partial_REID", _partial_reid),
    "msmt17": ("MSMT17_V1", _msmt17),
    "synthetic": ("synthetic", _market_like("synthetic")),
}
DATASET_NAMES = (*DATASETS, "folder")
SYNTHETIC_MIN_IDS = 4  # `drop make-synthetic --ids`: at least 2 identities each for training and test
_ALTERNATIVE_DIRS = {"msmt17": ("MSMT17_V2", "MSMT17")}

# Splits that must not be empty, per dataset (test-only sets have no train split).
TEST_ONLY = {"occluded_reid", "partial_reid"}


def dataset_folder(name: str, root: str | Path) -> Path:
    """The dataset folder for ``name`` under ``root`` (or ``root`` itself when it already is one)."""
    root = Path(root).expanduser()
    if name == "folder":
        folder = root
    else:
        dirname, _ = lookup(DATASETS, name, "dataset")
        candidates = [root / d for d in (dirname, *_ALTERNATIVE_DIRS.get(name, ()))]
        found = next((c for c in candidates if c.is_dir()), None)
        if found is not None:
            folder = found
        else:
            folder = root if (root.name in {c.name for c in candidates} or _looks_like(name, root)) else candidates[0]
    if not folder.is_dir():
        raise DatasetError(
            f"{name}: dataset folder {folder} not found.",
            hint=f"Point --root at the folder that contains {folder.name}/.",
        )
    return folder


def _looks_like(name: str, root: Path) -> bool:
    """Whether ``root`` is itself a (renamed) dataset folder of this kind."""
    markers = {
        "occluded_reid": "occluded_body_images",
        "partial_reid": "partial_body_images",
        "p_dukemtmc_reid": "test",
        "msmt17": "list_query.txt",
    }
    return (root / markers.get(name, "bounding_box_test")).exists()


def load_dataset(name: str, root: str | Path, pattern: str | None = None) -> Dataset:
    """Parse dataset ``name`` under ``root``: a :class:`Dataset` with ``.train``, ``.query``, ``.gallery``.

    Args:
        name: one of :data:`DATASET_NAMES`.
        root: the folder that contains the dataset folder, or the dataset folder itself.
        pattern: for ``folder`` only, a regex with named groups ``pid`` and ``camid``.
    """
    if name not in DATASET_NAMES:
        lookup(dict.fromkeys(DATASET_NAMES), name, "dataset")
    folder = dataset_folder(name, root)
    if name == "folder":
        if pattern is None:
            raise DatasetError("folder: a --pattern with named groups (?P<pid>...) and (?P<camid>...) is required.")
        dataset = folder_dataset(folder, pattern)
    else:
        dataset = DATASETS[name][1](folder)
    required = ("query", "gallery") if name in TEST_ONLY or name == "folder" else ("train", "query", "gallery")
    for split in required:
        if not dataset.splits[split]:
            raise DatasetError(
                f"{name}: the {split} split in {folder} has no images.",
                hint="Check that the dataset was extracted completely.",
            )
    return dataset
