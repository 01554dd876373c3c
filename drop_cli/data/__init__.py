"""Datasets: one parser per benchmark layout, the synthetic generator, statistics."""

from .datasets import DATASET_NAMES, DATASETS, Dataset, Record, load_dataset

__all__ = ["DATASETS", "DATASET_NAMES", "Dataset", "Record", "load_dataset"]
