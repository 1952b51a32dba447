"""Data sets: readers, prepare-once Parquet storage with fixed splits, the uint8 tensor cache.

The names below are imported on first use (PEP 562), so `python -m study.data --help` and the
notebook API do not import torch (study.data.augment) unless they need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Augment": "augment",
    "AugmentConfig": "augment",
    "PrepareError": "prepare",
    "PrepareResult": "prepare",
    "default_data_dir": "prepare",
    "prepare": "prepare",
    "DatasetSpec": "registry",
    "get_dataset": "registry",
    "list_datasets": "registry",
    "register_dataset": "registry",
    "NotPreparedError": "store",
    "PreparedDataset": "store",
    "SplitArrays": "store",
    "load_split": "store",
    "open_dataset": "store",
}
__all__ = [  # = _WHERE's keys, spelled out for type checkers and linters
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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # once
    return value
