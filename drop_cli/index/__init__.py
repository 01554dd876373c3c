"""Gallery indexes: approximate nearest-neighbour search (faiss) over a features file, re-scored exactly.

* :func:`build_index`: `drop index`, build or grow the index of a features file's split.
* :class:`GalleryIndex`: the index and its file (:func:`index_path`: where search looks for it).
* :class:`GallerySearch`: candidates from the index, re-scored by the exact visibility-aware distance.
"""

from .build import IndexResult, build_index
from .gallery_index import GalleryIndex, index_path
from .search import CANDIDATES, GallerySearch

__all__ = ["CANDIDATES", "GalleryIndex", "GallerySearch", "IndexResult", "build_index", "index_path"]
