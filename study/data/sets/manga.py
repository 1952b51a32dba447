"""Manga Facial Expressions (Kaggle): a class-per-folder tree (or its .zip) of 7 emotions."""

from __future__ import annotations

from study.data.registry import DatasetSpec, register_dataset
from study.data.sources import read_class_folders

MANGA_CLASSES = ("angry", "crying", "embarrassed", "happy", "pleased", "sad", "shock")

register_dataset(
    DatasetSpec(
        name="manga",
        reader=lambda src, seed: read_class_folders(src, MANGA_CLASSES),
        description="Manga Facial Expressions (Kaggle), class-per-folder tree or its .zip",
        classes=MANGA_CLASSES,
    )
)
