"""Pseudo human-parsing labels: the labels file, the labelers, and the runner that labels a dataset.

- ``file``: the labels HDF5 file (``LabelFile`` to read, ``LabelWriter`` to write; layout in its docstring).
- ``base``: what a labeler returns (``LabelResult``) and the per-image quality flags.
- ``labelers``: one module per source of part maps (``LABELERS``: pose, bpbreid, stripes, synthetic).
- ``runner``: labels every image of a dataset with worker processes, resumably (``run_labeling``).
"""

from .base import FLAG_MISSING_SOURCE, FLAG_NAMES, FLAG_NO_PERSON, FLAG_UNREADABLE, LabelResult
from .file import LabelFile, LabelWriter, default_label_size, default_labels_path
from .labelers import LABELERS, LabelerSpec
from .runner import LabelSummary, run_labeling

__all__ = [
    "FLAG_MISSING_SOURCE",
    "FLAG_NAMES",
    "FLAG_NO_PERSON",
    "FLAG_UNREADABLE",
    "LABELERS",
    "LabelFile",
    "LabelResult",
    "LabelSummary",
    "LabelWriter",
    "LabelerSpec",
    "default_label_size",
    "default_labels_path",
    "run_labeling",
]
