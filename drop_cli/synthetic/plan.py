"""The plan of a synthetic dataset: every image's split, identity, camera, occlusion and seed (``plan``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.datasets import SYNTHETIC_MIN_IDS as MIN_IDS
from ..errors import DropError

CAMERAS = 6

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}

# Split sizes (per identity unless stated). With 100 ids: ~900 train, ~100 query, ~450 gallery images.
_TRAIN_IMAGES = (14, 22)  # inclusive range per train identity
_QUERY_IMAGES = 2  # per query identity, one more with probability _THIRD_QUERY
_THIRD_QUERY = 0.25
_GALLERY_IMAGES = (7, 11)  # per test identity
_GALLERY_ONLY_SHARE = 0.1  # test identities with no query (gallery distractors)
_IDENTITY_CAMERAS = (3, 5)  # how many of the cameras see one identity
_TRAIN_OCCLUDED = 0.2
_GALLERY_OCCLUDED = 0.1
_COVERAGE = (0.3, 0.6)  # share of the target's part pixels an occluder hides


@dataclass(frozen=True)
class SyntheticItem:
    """One image of the synthetic dataset (see `plan`)."""

    relpath: str  # e.g. "bounding_box_train/0007_c3_f0000123.jpg"
    split: str  # "train" | "query" | "gallery"
    pid: int  # identity as written in the file name (train and test identities are disjoint)
    camid: int  # 1-based, as in the file name
    occluded: bool
    seed: int  # this image's random seed, from the global seed and the item's index


def _check(num_ids: int, seed: int) -> None:
    if isinstance(num_ids, bool) or not isinstance(num_ids, (int, np.integer)) or num_ids < MIN_IDS:
        raise DropError(
            f"the synthetic dataset needs at least {MIN_IDS} identities, got {num_ids!r}.",
            hint="Half of them train, half test; pass a larger number of ids.",
        )
    if num_ids > 9999:
        raise DropError(f"the synthetic dataset holds at most 9999 identities (4-digit names), got {num_ids}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DropError(f"the synthetic seed must be a non-negative integer, got {seed!r}.")


def _item_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, 3, index]).generate_state(1, np.uint64)[0] >> 1)


def _subset(rng: np.random.Generator, count: int, share: float) -> set[int]:
    """Exactly round(share * count) of the indices 0..count-1, so the occluded shares are exact."""
    return set(rng.choice(count, round(share * count), replace=False).tolist())


def plan(num_ids: int, seed: int) -> list[SyntheticItem]:
    """Every image of the dataset, in a stable order (train, query, gallery).

    Identities 1..T train and T+1..num_ids test (T = num_ids // 2). Each identity is seen by 3-5 of
    the cameras. About a tenth of the test identities appear in the gallery only (distractors); the
    others have 2-3 occluded query images, and their gallery always holds an image from a camera
    that none of their queries uses. 20% of train and 10% of gallery images are occluded."""
    _check(num_ids, seed)
    rng = np.random.default_rng([seed, 0])
    num_train = num_ids // 2
    test_ids = list(range(num_train + 1, num_ids + 1))
    gallery_only = set(
        rng.choice(test_ids, size=max(1, round(_GALLERY_ONLY_SHARE * len(test_ids))), replace=False).tolist()
    )
    rows: dict[str, list[tuple[int, int]]] = {"train": [], "query": [], "gallery": []}
    for pid in range(1, num_ids + 1):
        cams = (rng.permutation(CAMERAS)[: rng.integers(_IDENTITY_CAMERAS[0], _IDENTITY_CAMERAS[1] + 1)] + 1).tolist()
        if pid <= num_train:
            count = int(rng.integers(_TRAIN_IMAGES[0], _TRAIN_IMAGES[1] + 1))
            rows["train"] += [(pid, int(rng.choice(cams))) for _ in range(count)]
            continue
        if pid not in gallery_only:
            count = _QUERY_IMAGES + int(rng.random() < _THIRD_QUERY)
            rows["query"] += [(pid, int(rng.choice(cams[:-1]))) for _ in range(count)]
        count = int(rng.integers(_GALLERY_IMAGES[0], _GALLERY_IMAGES[1] + 1))
        rows["gallery"] += [(pid, cams[-1])] + [(pid, int(rng.choice(cams))) for _ in range(count - 1)]
    occluded = {
        "train": _subset(rng, len(rows["train"]), _TRAIN_OCCLUDED),
        "query": set(range(len(rows["query"]))),
        "gallery": _subset(rng, len(rows["gallery"]), _GALLERY_OCCLUDED),
    }
    items = []
    for split, entries in rows.items():
        for i, (pid, camid) in enumerate(entries):
            index = len(items)
            relpath = f"{SPLIT_FOLDERS[split]}/{pid:04d}_c{camid}_f{index:07d}.jpg"
            items.append(SyntheticItem(relpath, split, pid, camid, i in occluded[split], _item_seed(seed, index)))
    return items
