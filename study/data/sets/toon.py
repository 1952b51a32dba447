"""The embedded procedural cartoon faces (study.data.toon): FERG's 7 emotions, no download; the
source is a size name (tiny|small|default) or a number of images."""

from __future__ import annotations

from collections.abc import Iterable

from study.data.registry import DatasetSpec, register_dataset
from study.data.sets.ferg import FERG_EMOTIONS
from study.data.sources import SourceItem


def _toon_items(size: str, seed: int) -> Iterable[SourceItem]:
    # imported when read: the renderer (numpy, PIL drawing) is not needed to list data sets
    from study.data import toon

    return toon.iter_items(size, seed)


register_dataset(
    DatasetSpec(
        name="toon",
        reader=lambda src, seed: (_toon_items(src, seed), []),
        description="embedded procedural cartoon faces, 7 FERG emotions (tiny|small|default|N)",
        classes=FERG_EMOTIONS,
        default_source="default",
        source_is_path=False,
    )
)
