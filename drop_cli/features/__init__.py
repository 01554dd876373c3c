"""Test-time features: the model's forward pass at test time, the resumable extraction, the features file.

- ``forward``: ``test_embeddings`` (which rows BPBreID matches with) and ``extract_features`` (a loader
  through the model, in eval mode).
- ``extraction``: ``extract_to_file``, chunked and resumable.
- ``file``: the features HDF5 file (``FeatureFile``, ``read_features``, ``write_features`` from arrays;
  layout in its docstring).
- ``rows``: ``SplitRows``, scattered rows of a split read by byte offset (a search's candidates).
"""

from .extraction import Extraction, ExtractionRun, extract_to_file, features_complete
from .file import CHUNK_IMAGES, SPLITS, FeatureFile, SplitFeatures, read_features, write_features
from .forward import PART_EMBEDDINGS, Features, extract_features, test_embeddings
from .rows import SplitRows

__all__ = [
    "CHUNK_IMAGES",
    "PART_EMBEDDINGS",
    "SPLITS",
    "Extraction",
    "ExtractionRun",
    "FeatureFile",
    "Features",
    "SplitFeatures",
    "SplitRows",
    "extract_features",
    "extract_to_file",
    "features_complete",
    "read_features",
    "test_embeddings",
    "write_features",
]
