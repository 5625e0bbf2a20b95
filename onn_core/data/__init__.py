"""Datasets: the registry, readers for the standard on-disk formats, and seeded splits."""

from .registry import (
    SPECS,
    DatasetSpec,
    DatasetSplits,
    Split,
    dataset_status,
    list_datasets,
    load_dataset,
    load_for_design,
)

__all__ = [
    "SPECS", "DatasetSpec", "DatasetSplits", "Split", "dataset_status", "list_datasets", "load_dataset",
    "load_for_design",
]  # fmt: skip
