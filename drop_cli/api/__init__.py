"""The verbs of the command line as Python functions: what `drop <verb>` runs is exactly this.

Each function validates its inputs (raising :class:`~drop_cli.errors.DropError` with a hint), does
the work with a progress bar on stderr, and returns a small result object with ``to_json()``. One
module per verb or group of verbs; everything is importable from here.
"""
from .data import (
    GROUND_TRUTH_FILE,
    DatasetInfo,
    PrepareResult,
    SyntheticResult,
    dataset_info,
    default_labels_path,
    make_synthetic,
    prepare_data,
)
from .evaluation import EvaluationResult, evaluate
from .features import ExtractResult, extract_features
from .training import resolve_recipe, train
from .visualize import (
    VisualizeResult,
    visualize_embeddings,
    visualize_labels,
    visualize_parsing,
    visualize_ranking,
    visualize_training,
)
from .workflows import QuickstartResult, ablation_study, quickstart, synthetic_labeler

__all__ = [
    "GROUND_TRUTH_FILE", "DatasetInfo", "EvaluationResult", "ExtractResult", "PrepareResult", "QuickstartResult",
    "SyntheticResult", "VisualizeResult", "ablation_study", "dataset_info", "default_labels_path", "evaluate",
    "extract_features", "make_synthetic", "prepare_data", "quickstart", "resolve_recipe", "synthetic_labeler",
    "train", "visualize_embeddings", "visualize_labels", "visualize_parsing", "visualize_ranking",
    "visualize_training",
]
