"""drop: occluded person re-identification with DROP (Dou et al., arXiv 2401.18032).

The command line (`drop ...`) is a thin layer over the functions re-exported here.
"""
__version__ = "0.2.0"

from .api import (
    dataset_info,
    evaluate,
    extract_features,
    make_synthetic,
    prepare_data,
    quickstart,
    train,
    visualize_embeddings,
    visualize_labels,
    visualize_parsing,
    visualize_ranking,
    visualize_training,
)

__all__ = ["__version__", "dataset_info", "evaluate", "extract_features", "make_synthetic", "prepare_data",
           "quickstart", "train", "visualize_embeddings", "visualize_labels", "visualize_parsing",
           "visualize_ranking", "visualize_training"]
