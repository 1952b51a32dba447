"""Data sets: readers, prepare-once Parquet storage with fixed splits, the uint8 tensor cache.

`Augment` and `AugmentConfig` (torch) are imported on first use (PEP 562), so `study data
--help`, `study.load` and the report do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from study.data.prepare import PrepareError, PrepareResult, default_data_dir, prepare
from study.data.registry import DatasetSpec, get_dataset, list_datasets, register_dataset
from study.data.splits import EmptySplitsError
from study.data.store import (
    NotPreparedError,
    PreparedDataset,
    SplitArrays,
    load_split,
    open_dataset,
)

if TYPE_CHECKING:
    from study.data.augment import Augment, AugmentConfig

__all__ = [
    "Augment",
    "AugmentConfig",
    "DatasetSpec",
    "EmptySplitsError",
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


def __getattr__(name: str) -> Any:
    if name in ("Augment", "AugmentConfig"):
        from study.data import augment

        return getattr(augment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
