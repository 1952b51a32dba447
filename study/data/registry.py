"""One registry of data sets: name, reader, the classes it must have, its default split rule.

Each data set is one file in `study/data/sets/` that registers itself next to its reader; the
first lookup imports them all (found by file, like the spaces in search_spaces/), so adding a
data set touches no other file.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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
SETS = "study.data.sets"  # the package of data-set files
_found: set[str] = set()  # packages whose files are imported (registered) already

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


def discover(package: str | None = None) -> None:
    """Import every module of `package` once (each registers its data set). Found, not imported
    by name here: the files import this module, and importing them from it would close a loop."""
    package = package or SETS
    if package in _found:
        return
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package}: the folder of data-set files is not importable")
    for m in sorted(pkgutil.iter_modules(spec.submodule_search_locations), key=lambda m: m.name):
        if not m.name.startswith("_"):
            importlib.import_module(f"{package}.{m.name}")
    _found.add(package)  # only now: a file that failed to import fails the next lookup too


def get_dataset(name: str) -> DatasetSpec:
    discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown data set {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_datasets() -> list[str]:
    discover()
    return sorted(_REGISTRY)
