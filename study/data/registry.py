"""One registry of data sets: name, reader, the classes it must have, its default split rule."""

from __future__ import annotations

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


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
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


MANGA_CLASSES = ("angry", "crying", "embarrassed", "happy", "pleased", "sad", "shock")

register_dataset(
    DatasetSpec(
        name="manga",
        reader=lambda src, seed: sources.read_class_folders(src),
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
        reader=lambda src, seed: (sources.iter_toon(src, seed), []),
        description="embedded procedural cartoon faces, 7 FERG emotions (tiny|small|default|N)",
        classes=sources.FERG_EMOTIONS,
        default_source="default",
    )
)
register_dataset(
    DatasetSpec(
        name="folder",
        reader=lambda src, seed: sources.read_class_folders(src),
        description="any class-per-folder image tree (or .zip) you bring",
    )
)
