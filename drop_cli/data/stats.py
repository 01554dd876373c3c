"""Per-split statistics of a parsed dataset, checked against the figures their papers publish."""

from __future__ import annotations

from dataclasses import dataclass

from .datasets import Dataset

# Published (identities, images) per split; None where the paper gives no figure. Identities count
# distinct pids other than 0 (Market-1501's distractor id) after junk (-1) is dropped.
PUBLISHED: dict[str, dict[str, tuple[int | None, int]]] = {
    "market1501": {"train": (751, 12936), "query": (750, 3368), "gallery": (751, 15913)},
    "dukemtmcreid": {"train": (702, 16522), "query": (702, 2228), "gallery": (1110, 17661)},
    "occluded_duke": {"train": (702, 15618), "query": (519, 2210), "gallery": (1110, 17661)},
    "occluded_reid": {"query": (200, 1000), "gallery": (200, 1000)},
    "p_dukemtmc_reid": {"train": (665, 12927), "query": (None, 2163), "gallery": (None, 9053)},
    "partial_reid": {"query": (60, 300), "gallery": (60, 300)},
    "msmt17": {"train": (1041, 32621), "query": (3060, 11659), "gallery": (3060, 82161)},
}


@dataclass(frozen=True)
class SplitStats:
    images: int
    ids: int
    cameras: int

    def to_json(self) -> dict:
        return {"images": self.images, "ids": self.ids, "cameras": self.cameras}


def split_stats(dataset: Dataset) -> dict[str, SplitStats]:
    """Images, identities (pid 0 not counted) and cameras of each split."""
    return {
        split: SplitStats(
            len(records),
            len({r.pid for r in records if r.pid != 0 or split == "train"}),
            len({r.camid for r in records}),
        )
        for split, records in dataset.splits.items()
    }


def compare_with_published(name: str, stats: dict[str, SplitStats]) -> list[str]:
    """One sentence per split whose counts differ from the published ones (empty when they agree)."""
    warnings = []
    for split, (ids, images) in PUBLISHED.get(name, {}).items():
        got = stats[split]
        diffs = [f"{got.images:,} images (published {images:,})"] if got.images != images else []
        if ids is not None and got.ids != ids:
            diffs.append(f"{got.ids:,} identities (published {ids:,})")
        if diffs:
            warnings.append(f"{name} {split}: your copy has " + " and ".join(diffs) + ".")
    return warnings
