"""drop: occluded person re-identification with DROP (Dou et al., arXiv 2401.18032).

The command line (`drop ...`) is a thin layer over the functions re-exported here from
``drop_cli.api``; they are loaded on first use, so ``import drop_cli`` is cheap.
"""

from __future__ import annotations

import importlib

from ._version import __version__

__all__ = [
    "ReidModel",
    "__version__",
    "dataset_info",
    "embed",
    "evaluate",
    "export",
    "extract_features",
    "make_synthetic",
    "prepare_data",
    "quickstart",
    "search",
    "train",
    "visualize_embeddings",
    "visualize_labels",
    "visualize_parsing",
    "visualize_ranking",
    "visualize_training",
]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(".api", __name__), name)
