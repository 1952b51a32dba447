"""Readers that turn a data set as published into a flat list of `SourceItem`s.

Readers only *list* files (cheap); bytes are read later, once, by `prepare`. Every reader yields the
same normalised form so that everything downstream is data-set agnostic.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Files every OS/unzip tool sprinkles into trees; never images, never worth a warning.
_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class SourceItem:
    path: str  # identifier relative to the source root (POSIX separators)
    label: str
    group: str  # character for FERG/toon, "" where the data set has none
    read: Callable[[], bytes]


class SourceError(ValueError):
    """The source as a whole is unusable; names the path and what is expected."""


def _is_junk(name: str) -> bool:
    base = PurePosixPath(name).name
    return base.lower() in _JUNK or base.startswith("._") or "__MACOSX" in name


def _reader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


def _zip_reader(zpath: Path, member: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(zpath) as zf:
            return zf.read(member)

    return read


def _class_root(names: list[str]) -> str:
    """Find the folder whose children are the class folders.

    Published archives often wrap the class folders in one or two extra folders
    (`Manga Facial Expressions/angry/...`); descend while there is one sub-folder and no files.
    """
    prefix = ""
    while True:
        below = [n[len(prefix) :] for n in names if n.startswith(prefix)]
        subdirs = {p.split("/", 1)[0] for p in below if "/" in p}
        if len(subdirs) == 1 and all("/" in p for p in below):
            prefix = f"{prefix}{subdirs.pop()}/"
            continue
        return prefix


def _list_tree(source: Path) -> tuple[list[str], Callable[[str], Callable[[], bytes]]]:
    """All file paths (POSIX, relative) under a folder or inside a .zip, plus a reader factory."""
    if not source.exists():
        raise SourceError(f"source {source}: no such file or folder")
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise SourceError(f"source {source}: expected a folder or a .zip archive")
        with zipfile.ZipFile(source) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
        return names, lambda rel: _zip_reader(source, rel)
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    return names, lambda rel: _reader(source / rel)


def read_class_folders(source: str | Path) -> tuple[list[SourceItem], list[tuple[str, str]]]:
    """A class-per-folder tree (or its .zip). Returns items and problems [(path, reason)].

    Every file in a class folder is listed (non-images too, so validation reports them by name);
    a class folder with no file at all is a problem of its own.
    """
    source = Path(source)
    names, make_reader = _list_tree(source)
    names = [n for n in names if not _is_junk(n)]
    root = _class_root(names)
    items: list[SourceItem] = []
    problems: list[tuple[str, str]] = []
    if source.is_dir():  # empty class folders only exist on disk (zips do not list them)
        base = source / root
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            if not any(f.is_file() and not _is_junk(f.name) for f in d.rglob("*")):
                problems.append((f"{root}{d.name}/", "class folder has no images"))
    for n in names:
        if not n.startswith(root):
            continue
        rel = n[len(root) :]
        if "/" not in rel:
            problems.append((n, "file outside any class folder"))
            continue
        label = rel.split("/", 1)[0]
        items.append(SourceItem(path=n, label=label, group="", read=make_reader(n)))
    if not items and not problems:
        raise SourceError(f"source {source}: no class folders with files found")
    return items, problems


FERG_CHARACTERS = ("aia", "bonnie", "jules", "malcolm", "mery", "ray")
FERG_EMOTIONS = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


def read_ferg(source: str | Path) -> tuple[list[SourceItem], list[tuple[str, str]]]:
    """FERG-DB as distributed: `FERG_DB_256/<char>/<char>_<emotion>/<char>_<emotion>_<n>.png`.

    `source` may be the FERG_DB_256 folder itself, its parent, or the archive. The character becomes
    the item's group so that `by-group` splits can hold out whole characters.
    """
    source = Path(source)
    names, make_reader = _list_tree(source)
    items: list[SourceItem] = []
    problems: list[tuple[str, str]] = []
    for n in names:
        if _is_junk(n):
            continue
        parts = n.split("/")
        # locate the <char>/<char>_<emotion>/file triple at the end of the path
        if len(parts) < 3 or parts[-3] not in FERG_CHARACTERS:
            continue
        char, folder = parts[-3], parts[-2]
        emotion = folder[len(char) + 1 :] if folder.startswith(f"{char}_") else ""
        if emotion not in FERG_EMOTIONS:
            problems.append((n, f"folder {folder!r} is not <character>_<emotion>"))
            continue
        items.append(SourceItem(path=n, label=emotion, group=char, read=make_reader(n)))
    if not items:
        raise SourceError(
            f"source {source}: no FERG-DB images found; expected "
            "FERG_DB_256/<character>/<character>_<emotion>/<character>_<emotion>_<n>.png "
            f"with characters {', '.join(FERG_CHARACTERS)}"
        )
    return items, problems


def iter_toon(size: str | int, seed: int, image_size: int = 128) -> Iterator[SourceItem]:
    """The embedded synthetic set; `size` is a name from toon.SIZES or a number of images."""
    from study.data import toon

    if isinstance(size, str) and not size.isdigit():
        if size not in toon.SIZES:
            raise SourceError(
                f"toon source {size!r}: expected one of {', '.join(toon.SIZES)} or a number"
            )
        n = toon.SIZES[size]
    else:
        n = int(size)
    for img in toon.generate(n, seed=seed, image_size=image_size):
        yield SourceItem(path=img.name, label=img.label, group=img.group, read=lambda b=img.png: b)
