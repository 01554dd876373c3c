"""Search through a gallery index: the index's candidates, re-scored by the exact distance, optionally
re-ranked over that short list.

Each query is answered on its own (its candidates, its exact distances), so a query's result does
not depend on the other queries searched with it; the candidates are sorted by gallery row first so
that ties rank in gallery order, as the exhaustive search ranks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluation.scoring import Rerank, make_setting, setting_distances
from ..features.rows import SplitRows
from .gallery_index import GalleryIndex

# Candidates per query re-scored exactly: [ours] recall@10 of the exhaustive ranking >= 0.98 at a million
# clustered images (benchmarks/bench_index.py); reading them takes a few milliseconds.
CANDIDATES = 1000


@dataclass
class _Images:
    """The scoring's view of a few images (identities unknown: -1)."""

    embeddings: np.ndarray
    visibility: np.ndarray
    pids: np.ndarray
    camids: np.ndarray

    @classmethod
    def of(cls, embeddings: np.ndarray, visibility: np.ndarray) -> _Images:
        unknown = np.full(len(embeddings), -1)
        return cls(embeddings, visibility, unknown, unknown)


class GallerySearch:
    """Search a gallery through its index, one query at a time (a server keeps one and calls it per query).

    Args:
        index: built from ``gallery`` (checked here: a DropError otherwise).
        gallery: the features file's split the index was built from.
        paths: the gallery's image paths, when the caller has read them already.
    """

    def __init__(self, index: GalleryIndex, gallery: SplitRows, paths: list[str] | None = None):
        index.check(gallery, paths)
        self.index, self.gallery = index, gallery
        self._rows = np.empty((0, *gallery.shape[1:]), np.float32)  # candidates' embeddings, reused

    def __call__(
        self,
        query_embeddings: np.ndarray,
        query_visibility: np.ndarray,
        *,
        top: int,
        candidates: int = CANDIDATES,
        rerank: Rerank | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (gallery rows [k], distances [k]) of its ``top`` nearest, best first (k = top, or fewer
        where the index returns fewer candidates).

        Args:
            query_embeddings: [Nq, M, D] L2-normalised rows; query_visibility [Nq, M].
            candidates: images per query taken from the index and re-scored with the exact distance
                (the index's, visibility-aware); at least ``top``.
            rerank: k-reciprocal re-ranking of each query's candidates (None: the exact distance).
        """
        found = self.index.candidates(query_embeddings, query_visibility, max(candidates, top))
        setting = make_setting(self.index.setting.distance, self.index.setting.visibility, rerank is not None)
        names = self.index.attrs["names"]
        if len(self._rows) < found.shape[1]:
            self._rows = np.empty((found.shape[1], *self.gallery.shape[1:]), np.float32)
        results = []
        for q, row in enumerate(found):
            rows = np.sort(row[row >= 0])
            embeddings = self.gallery.embeddings(rows, out=self._rows[: len(rows)])
            shortlist = _Images.of(embeddings, self.gallery.visibility[rows])
            query = _Images.of(query_embeddings[q : q + 1], query_visibility[q : q + 1])
            distances = setting_distances(query, shortlist, names, setting, rerank or Rerank(), device="cpu")[0]
            order = np.argsort(distances, kind="stable")[:top]
            results.append((rows[order], distances[order]))
        return results
