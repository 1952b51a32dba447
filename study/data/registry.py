"""One registry of data sets: name, reader, the classes it must have, its default split rule."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from study.data import sources
from study.data.sources import SourceItem

Reader = Callable[[str, int], tuple[Iterable[SourceItem], list[tuple[str, str]]]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    reader: Reader  # (source, seed) -> (items, problems)
    description: str
    classes: tuple[str, ...] | None = None  # None: whatever class folders the source has
    default_split: str = "stratified"
    default_source: str | None = None  # data sets that need no download (toon)
    source_is_path: bool = True  # False: --source is a size name (toon), not a file or folder


_REGISTRY: dict[str, DatasetSpec] = {}

# A data-set name becomes one directory under the data dir: nothing that could point elsewhere
# ("/", "..") or at the data dir itself (".").
_NAME = re.compile(r"[A-Za-z0-9._-]+")
NAME_RULE = "letters, digits, '-', '_' and '.', not '.' or '..' alone, no '/'"


def check_name(name: str, what: str = "--name") -> str:
    """`name` if it is a plain identifier, else ValueError naming `what` and the rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"{what} {name!r}: a data-set name is a plain identifier ({NAME_RULE})")
    return name


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    check_name(spec.name, "data set name")
    if spec.name in _REGISTRY:
        raise ValueError(f"data set {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown data set {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def _toon_items(size: str, seed: int) -> Iterable[SourceItem]:
    # imported when read: the renderer (numpy, PIL drawing) is not needed to list data sets
    from study.data import toon

    return toon.iter_items(size, seed)


MANGA_CLASSES = ("angry", "crying", "embarrassed", "happy", "pleased", "sad", "shock")

register_dataset(
    DatasetSpec(
        name="manga",
        reader=lambda src, seed: sources.read_class_folders(src, MANGA_CLASSES),
        description="Manga Facial Expressions (Kaggle), class-per-folder tree or its .zip",
        classes=MANGA_CLASSES,
    )
)
register_dataset(
    DatasetSpec(
        name="ferg",
        reader=lambda src, seed: sources.read_ferg(src),
        description="FERG-DB 256 px, 6 characters x 7 emotions; characters kept as groups",
        classes=sources.FERG_EMOTIONS,
        default_split="by-group",
    )
)
register_dataset(
    DatasetSpec(
        name="toon",
        reader=lambda src, seed: (_toon_items(src, seed), []),
        description="embedded procedural cartoon faces, 7 FERG emotions (tiny|small|default|N)",
        classes=sources.FERG_EMOTIONS,
        default_source="default",
        source_is_path=False,
    )
)
register_dataset(
    DatasetSpec(
        name="folder",
        reader=lambda src, seed: sources.read_class_folders(src),
        description="any class-per-folder image tree (or .zip) you bring",
    )
)
