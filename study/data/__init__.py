"""Data sets: readers, prepare-once Parquet storage with fixed splits, the uint8 tensor cache."""

from __future__ import annotations

from study.data.augment import Augment, AugmentConfig
from study.data.prepare import PrepareError, PrepareResult, default_data_dir, prepare
from study.data.registry import DatasetSpec, get_dataset, list_datasets, register_dataset
from study.data.store import (
    NotPreparedError,
    PreparedDataset,
    SplitArrays,
    load_split,
    open_dataset,
)

__all__ = [
    "Augment",
    "AugmentConfig",
    "DatasetSpec",
    "NotPreparedError",
    "PrepareError",
    "PrepareResult",
    "PreparedDataset",
    "SplitArrays",
    "default_data_dir",
    "get_dataset",
    "list_datasets",
    "load_split",
    "open_dataset",
    "prepare",
    "register_dataset",
]
