"""Any class-per-folder image tree (or .zip) a user brings: its folders are its classes."""

from __future__ import annotations

from study.data.registry import DatasetSpec, register_dataset
from study.data.sources import read_class_folders

register_dataset(
    DatasetSpec(
        name="folder",
        reader=lambda src, seed: read_class_folders(src),
        description="any class-per-folder image tree (or .zip) you bring",
    )
)
