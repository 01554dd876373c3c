"""The verbs of the command line as Python functions: what `drop <verb>` runs is exactly this.

Each function validates its inputs (raising :class:`~drop_cli.errors.DropError` with a hint), calls
one stage of the pipeline, and returns a small result object with ``to_json()``. One module per verb
or group of verbs; every name is importable from here. The names are loaded on first use (PEP 562),
so that ``drop --help`` and ``drop --version`` start without importing torch.
"""

from __future__ import annotations

import importlib

# Public name -> the module of this package that defines it.
_EXPORTS = {
    **dict.fromkeys(
        (
            "GROUND_TRUTH_FILE",
            "DatasetInfo",
            "PrepareResult",
            "SyntheticResult",
            "dataset_info",
            "default_labels_path",
            "make_synthetic",
            "prepare_data",
        ),
        "data",
    ),
    **dict.fromkeys(("EvaluationResult", "evaluate"), "evaluation"),
    **dict.fromkeys(("ExtractResult", "extract_features", "split_features"), "features"),
    **dict.fromkeys(
        (
            "EmbedResult",
            "ExportResult",
            "IndexResult",
            "ReidModel",
            "SearchResult",
            "embed",
            "export",
            "index",
            "search",
        ),
        "inference",
    ),
    **dict.fromkeys(("resolve_recipe", "train"), "training"),
    **dict.fromkeys(
        (
            "VisualizeResult",
            "visualize_embeddings",
            "visualize_labels",
            "visualize_parsing",
            "visualize_ranking",
            "visualize_training",
        ),
        "visualize",
    ),
    **dict.fromkeys(("QuickstartResult", "quickstart", "synthetic_labeler"), "workflows"),
}
__all__ = [
    "GROUND_TRUTH_FILE",
    "DatasetInfo",
    "EmbedResult",
    "EvaluationResult",
    "ExportResult",
    "ExtractResult",
    "IndexResult",
    "PrepareResult",
    "QuickstartResult",
    "ReidModel",
    "SearchResult",
    "SyntheticResult",
    "VisualizeResult",
    "dataset_info",
    "default_labels_path",
    "embed",
    "evaluate",
    "export",
    "extract_features",
    "index",
    "make_synthetic",
    "prepare_data",
    "quickstart",
    "resolve_recipe",
    "search",
    "split_features",
    "synthetic_labeler",
    "train",
    "visualize_embeddings",
    "visualize_labels",
    "visualize_parsing",
    "visualize_ranking",
    "visualize_training",
]


def __getattr__(name: str):
    if name not in _EXPORTS:  # __all__ lists the same names (tests/test_architecture.py checks it)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
