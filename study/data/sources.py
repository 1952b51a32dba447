"""Readers that turn a data set as published into a flat list of `SourceItem`s.

Readers only *list* files (cheap); bytes are read later, once, by `prepare`. Every reader yields the
same normalised form so that everything downstream is data-set agnostic.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from study.data.decode import BadImage

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Files every OS/unzip tool sprinkles into trees; never images, never worth a warning.
_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}
# What one zip member may inflate to. Generous for any image (a 50 Mpx 16-bit PNG is ~100 MiB
# raw); it stops a small archive from inflating gigabytes into memory.
MAX_MEMBER_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SourceItem:
    path: str  # identifier relative to the source root (POSIX separators)
    label: str
    group: str  # character for FERG/toon, "" where the data set has none
    read: Callable[[], bytes]


class SourceError(ValueError):
    """The source as a whole is unusable; names the path and what is expected."""


@dataclass
class Listing:
    """What a folder or zip holds: files and folders (relative, POSIX), entries that cannot be
    used with the reason, and a factory of byte readers."""

    files: list[str]
    dirs: list[str]
    problems: list[tuple[str, str]]
    reader: Callable[[str], Callable[[], bytes]]
    is_zip: bool = False


def is_junk(name: str) -> bool:
    base = PurePosixPath(name).name
    return base.lower() in _JUNK or base.startswith("._") or "__MACOSX" in name


def shown(name: str) -> str:
    """A path as messages and the manifest show it: bytes of a name that are not UTF-8 (kept by
    the OS as surrogates) become \\xNN escapes, so the text can be printed and stored."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def _zip_reader(zpath: Path, member: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zipfile.ZipFile(zpath) as zf, zf.open(member) as f:
                # read one byte past the cap: a header may lie about the size
                data = f.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
            raise BadImage(f"cannot be read from {zpath.name} ({e})") from None
        if len(data) > MAX_MEMBER_BYTES:
            raise BadImage(f"zip member inflates past the cap of {_mib(MAX_MEMBER_BYTES)}")
        return data

    return read


def _list_zip(source: Path) -> Listing:
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise SourceError(f"source {source}: cannot read the zip archive ({e})") from None
    files, dirs, problems = [], [], []
    for i in infos:
        if i.is_dir():
            dirs.append(i.filename.rstrip("/"))
        elif i.file_size > MAX_MEMBER_BYTES:
            problems.append(
                (
                    i.filename,
                    f"zip member declares {i.file_size:,} bytes uncompressed, over the cap of "
                    f"{_mib(MAX_MEMBER_BYTES)}",
                )
            )
        else:
            files.append(i.filename)
    return Listing(files, dirs, problems, lambda rel: _zip_reader(source, rel), is_zip=True)


def _unusable(entry: os.DirEntry, err: OSError) -> str:
    if entry.is_symlink() and err.errno == errno.ENOENT:
        return "broken symbolic link (its target does not exist)"
    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot be read ({err.strerror or err})"


def _walk(root: Path) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Every regular file and folder under `root`, following symbolic links; everything that
    cannot be listed or read (broken or looping links, unreadable folders, names that are not
    UTF-8, pipes and devices) is a problem with its reason, never silently left out."""
    files: list[str] = []
    dirs: list[str] = []
    problems: list[tuple[str, str]] = []

    def visit(path: str, rel: str, ancestors: frozenset[str]) -> None:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if not rel:
                raise SourceError(f"source {root}: cannot be read ({e.strerror or e})") from None
            problems.append((shown(rel), f"folder cannot be read ({e.strerror or e})"))
            return
        for e in entries:
            r = rel + e.name
            if is_junk(r):
                continue
            try:
                r.encode("utf-8")
            except UnicodeEncodeError:
                problems.append((shown(r), "name is not valid UTF-8 (shown with \\x escapes)"))
                continue
            try:
                st = os.stat(e.path)  # follows symbolic links
            except OSError as err:
                problems.append((r, _unusable(e, err)))
                continue
            if stat.S_ISDIR(st.st_mode):
                real = os.path.realpath(e.path)
                if real in ancestors:
                    problems.append((f"{r}/", "symbolic link loop (to a folder that holds it)"))
                    continue
                dirs.append(r)
                visit(e.path, f"{r}/", ancestors | {real})
            elif stat.S_ISREG(st.st_mode):
                files.append(r)
            else:  # reading a pipe would block forever
                problems.append((r, "not a regular file (pipe, socket or device)"))

    visit(str(root), "", frozenset({os.path.realpath(root)}))
    return files, dirs, problems


def list_tree(source: Path) -> Listing:
    """All files (POSIX, relative) under a folder or inside a .zip, plus a reader factory."""
    if not source.exists():
        raise SourceError(f"source {source}: no such file or folder")
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise SourceError(f"source {source}: expected a folder or a .zip archive")
        return _list_zip(source)
    if not source.is_dir():
        raise SourceError(f"source {source}: expected a folder or a .zip archive")
    files, dirs, problems = _walk(source)
    return Listing(files, dirs, problems, lambda rel: (source / rel).read_bytes)


def _level(prefix: str, files: list[str], dirs: list[str]) -> tuple[list[str], bool]:
    """The folders directly under `prefix`, and whether files sit there directly."""
    sub, has_files = set(), False
    for n in files:
        if n.startswith(prefix):
            rest = n[len(prefix) :]
            if "/" in rest:
                sub.add(rest.split("/", 1)[0])
            else:
                has_files = True
    sub |= {d[len(prefix) :] for d in dirs if d.startswith(prefix) and "/" not in d[len(prefix) :]}
    sub.discard("")
    return sorted(sub), has_files


def _class_root(
    source: Path, listing: Listing, files: list[str], classes: tuple[str, ...] | None
) -> str:
    """The folder whose sub-folders are the classes.

    The class is the first folder level under the source. Two kinds of wrapper folder (a level
    holding nothing but one folder) are looked through, because archives come that way: for a
    data set whose classes are known (manga: `Manga Facial Expressions/angry/...`), any wrapper
    whose name is not a class; for `folder`, only the one folder a zip of a folder adds (named
    like the archive: `mine.zip` holding `mine/`). A single folder otherwise is ambiguous: it may
    be a class or hold the classes, so it is refused rather than guessed.
    """
    prefix = ""
    while True:
        sub, has_files = _level(prefix, files, listing.dirs)
        if has_files or len(sub) != 1:
            break
        if classes is not None:
            if sub[0] in classes:
                break
        elif not (listing.is_zip and not prefix and sub[0] == source.stem):
            break
        prefix = f"{prefix}{sub[0]}/"
    if classes is None and len(sub) == 1 and not has_files:
        inner, _ = _level(f"{prefix}{sub[0]}/", files, listing.dirs)
        hint = (
            f"pass --source {source / prefix / sub[0]}"
            if not listing.is_zip
            else "put the class folders at the top of the archive"
        )
        raise SourceError(
            f"source {source}: holds a single folder {prefix + sub[0]!r}"
            + (f" (with sub-folders {', '.join(inner[:5])})" if inner else "")
            + "; the class is the first folder level under the source, so this would be one "
            f"class. If its sub-folders are the classes, {hint}."
        )
    return prefix


def read_class_folders(
    source: str | Path, classes: tuple[str, ...] | None = None
) -> tuple[list[SourceItem], list[tuple[str, str]]]:
    """A class-per-folder tree (or its .zip). Returns items and problems [(path, reason)].

    Every file in a class folder is listed (non-images too, so validation reports them by name);
    a class folder with no file at all is a problem of its own. Images sit directly in their class
    folder (see `_class_root` for which level that is); a deeper file makes the tree ambiguous
    (`anger/style_a/x.png`: class anger or style_a?), so the tree is refused naming it.
    """
    source = Path(source)
    listing = list_tree(source)
    names = sorted(n for n in listing.files if not is_junk(n))
    root = _class_root(source, listing, names, classes)
    items: list[SourceItem] = []
    problems = list(listing.problems)
    class_dirs, _ = _level(root, names, listing.dirs)
    for d in class_dirs:
        folder = f"{root}{d}/"
        if not any(n.startswith(folder) for n in names) and not any(
            p.startswith(folder) for p, _ in problems
        ):
            problems.append((folder, "class folder has no images"))
    for n in names:
        if not n.startswith(root):
            continue
        rel = n[len(root) :]
        if "/" not in rel:
            problems.append((n, "file outside any class folder"))
            continue
        label, below = rel.split("/", 1)
        if "/" in below:
            raise SourceError(
                f"source {source}: {n!r} is nested below its class folder {root + label!r}; "
                f"the class is the first folder level under {root or 'the source'} and images "
                f"must sit directly in it, so this tree is ambiguous (class {label!r} or "
                f"{PurePosixPath(n).parent.name!r}?). Move the images into their class folder."
            )
        items.append(SourceItem(path=n, label=label, group="", read=listing.reader(n)))
    if not items and not problems:
        raise SourceError(f"source {source}: no class folders with files found")
    return items, problems
