"""`prepare`: read a source once, validate every file, fix the splits, write Parquet + manifest."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study import storage
from study.data.decode import MIN_SIDE, BadImage, inspect_image
from study.data.findings import exact_duplicates, label_conflicts, near_duplicates, summarise
from study.data.registry import check_name, get_dataset
from study.data.sources import SourceItem
from study.data.splits import (
    SPLITS,
    EmptySplitsError,
    assign_splits,
    check_listed,
    class_counts,
    empty_splits,
)

FORMAT_VERSION = 1  # bump when the on-disk layout changes
IMAGES_FILE = "images.parquet"
MANIFEST_FILE = "manifest.json"
CACHE_DIR = "cache"  # decoded tensors (study.data.store), inside a local data set's folder
# Keys every manifest written by `prepare` has: a folder without them was not written by it.
_MANIFEST_KEYS = ("format_version", "dataset", "version")


class PrepareError(ValueError):
    """Bad files were found; the message lists every one with its reason."""

    def __init__(self, name: str, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = "\n".join(f"  {p}: {r}" for p, r in problems)
        super().__init__(
            f"prepare {name}: {len(problems)} bad file(s); nothing was written.\n{lines}\n"
            "Fix or remove them, or pass --skip-bad to leave them out (listed in the manifest)."
        )


@dataclass
class PrepareResult:
    out_dir: Path | str  # a local directory, or a URI on shared storage
    manifest: dict
    summary: str
    reused: bool = False
    table: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def default_data_dir() -> Path | str:
    """`$STUDY_DATA_DIR` (a path or a URI such as s3://bucket/data), else ./data."""
    value = os.environ.get("STUDY_DATA_DIR", "data")
    if not value.strip():
        # Path("") is the working directory: data sets would be read from, or prepared into,
        # wherever the command happens to run
        raise ValueError(
            "STUDY_DATA_DIR is set but empty (that would be the current directory): unset it "
            "for ./data, or set it to a folder or URI"
        )
    return value if storage.is_remote(value) else Path(value)


# progress(what, done, total): "read" as the source is listed (or generated: toon), total None;
# then "decoded" per file, total known
Progress = Callable[[str, int, int | None], None]


def _counted(items: Iterable[SourceItem], progress: Progress | None) -> list[SourceItem]:
    out = []
    for item in items:
        out.append(item)
        if progress:
            progress("read", len(out), None)
    return out


def _inspect_all(
    items: list[SourceItem], workers: int, progress: Progress | None = None
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Read and decode every file exactly once (threads: PIL releases the GIL while decoding)."""

    def one(item: SourceItem) -> dict | tuple[str, str]:
        try:
            data = item.read()
            facts = inspect_image(data, MIN_SIDE)
        except BadImage as e:
            return (item.path, str(e))
        except OSError as e:
            return (item.path, f"cannot be read ({e.strerror or e})")
        return {
            "path": item.path,
            "label": item.label,
            "group": item.group,
            "sha256": facts.sha256,
            "width": facts.width,
            "height": facts.height,
            "format": facts.format,
            "mode": facts.mode,
            "dhash": facts.dhash,
            "image": data,
        }

    rows, bad = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r in pool.map(one, items):
            (bad if isinstance(r, tuple) else rows).append(r)
            if progress:
                progress("decoded", len(rows) + len(bad), len(items))
    return rows, bad


def _version(df: pd.DataFrame, rule: str, seed: int) -> str:
    h = hashlib.sha256(f"{FORMAT_VERSION}|{rule}|{seed}".encode())
    for row in df[["path", "sha256", "label", "group", "split"]].itertuples(index=False):
        h.update("|".join(map(str, row)).encode() + b"\n")
    return h.hexdigest()[:12]


def prepare(
    name: str,
    source: str | Path | None = None,
    data_dir: str | Path | None = None,
    split: str | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    out_name: str | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
    allow_empty_splits: bool = False,
    keep_conflicts: bool = False,
) -> PrepareResult:
    """Read `source` once, check every file and the splits, write the data set (see
    docs/data.md). `allow_empty_splits`: prepare even if some class lacks train, val or test
    (recorded in the manifest's `empty_splits`); `keep_conflicts`: keep images whose bytes sit
    under two or more classes (else left out; the manifest's `label_conflicts` names them)."""
    spec = get_dataset(name)
    split = split or spec.default_split
    if split not in ("stratified", "by-group"):
        raise ValueError(f"--split {split!r}: expected 'stratified' or 'by-group'")
    source = source if source is not None else spec.default_source
    if source is None:
        raise ValueError(f"prepare {name}: --source PATH is required ({spec.description})")
    if out_name is not None:
        check_name(out_name, "--name")
    data_dir = data_dir or default_data_dir()
    remote = storage.is_remote(data_dir)
    out_dir = (
        storage.join(data_dir, out_name or name)
        if remote
        else storage.local_path(data_dir) / (out_name or name)
    )
    if not remote and spec.source_is_path:
        _check_apart(source, out_dir)
    # before any decoding: refuse an output that prepare did not write
    prev = _existing(out_dir, overwrite)

    items, problems = spec.reader(str(source), seed)
    items = _counted(items, progress)
    if spec.classes is not None:
        found = {i.label for i in items}
        unexpected = sorted(found - set(spec.classes))
        problems += [
            (i.path, f"class {i.label!r} is not one of {', '.join(spec.classes)}")
            for i in items
            if i.label in unexpected
        ]
        items = [i for i in items if i.label not in unexpected]
    if not allow_empty_splits:  # before decoding: a class of 1 or 2 files can never fill 3 splits
        listed = pd.DataFrame(
            {"label": [i.label for i in items], "group": [i.group for i in items]}
        )
        check_listed(out_name or name, listed, split, seed)
    rows, bad = _inspect_all(items, workers or min(8, (os.cpu_count() or 2) * 2), progress)
    problems = sorted(problems + bad)
    if problems and not skip_bad:
        raise PrepareError(name, problems)
    if not rows:
        raise ValueError(f"prepare {name}: no usable images in {source}")

    df = pd.DataFrame(rows).sort_values("path", kind="stable").reset_index(drop=True)
    classes = list(spec.classes) if spec.classes else sorted(df["label"].unique())
    missing = [c for c in classes if c not in set(df["label"])]
    if missing:
        raise ValueError(
            f"prepare {name}: no images for class(es) {', '.join(missing)} in {source}"
        )
    # one picture under two classes: no label to train or score it by (kept only on request)
    conflicts = label_conflicts(df)
    if conflicts and not keep_conflicts:
        df = df[~df["sha256"].isin([c["sha256"] for c in conflicts])].reset_index(drop=True)
        if df.empty:
            raise ValueError(
                f"prepare {name}: every image in {source} is a label conflict (the same bytes "
                "under two or more classes); --keep-conflicts keeps them"
            )
    df["label_id"] = df["label"].map({c: i for i, c in enumerate(classes)}).astype("int32")
    df["split"] = assign_splits(df, split, seed)
    counts = class_counts(df["label"], df["split"], classes)
    if empty_splits(counts) and not allow_empty_splits:
        left_out = (
            f"{len(conflicts)} label conflict(s) (the same bytes under two or more classes) were "
            "left out of every split; --keep-conflicts keeps them.\n"
            if conflicts and not keep_conflicts
            else ""
        )
        raise EmptySplitsError(out_name or name, counts, split, seed, note=left_out)
    version = _version(df, split, seed)

    manifest = {
        "name": out_name or name,
        "dataset": name,
        "version": version,
        "format_version": FORMAT_VERSION,
        "source": str(source),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "split_rule": split,
        "classes": classes,
        "groups": sorted(g for g in df["group"].unique() if g),
        "counts": {s: int((df["split"] == s).sum()) for s in SPLITS},
        "class_counts": counts,
        # what --allow-empty-splits let through: class -> the splits it has no image in
        "empty_splits": empty_splits(counts),
        "formats": df["format"].value_counts().sort_index().to_dict(),
        "modes": df["mode"].value_counts().sort_index().to_dict(),
        "duplicates": exact_duplicates(df),
        "label_conflicts": conflicts,
        "conflicts_kept": bool(conflicts) and keep_conflicts,
        "near_duplicates": near_duplicates(df),
        "skipped": [{"path": p, "reason": r} for p, r in problems],
        "versions": {
            "python": platform.python_version(),
            "pyarrow": pa.__version__,
            "pandas": pd.__version__,
        },
    }
    table = df.drop(columns=["image"])
    summary = summarise(manifest, table)

    if prev is not None:
        if prev.get("version") == version:
            return PrepareResult(out_dir, prev, summary, reused=True, table=table)
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} already holds version {prev.get('version')} of {prev['dataset']} "
                f"(this source gives {version}); studies that used it would silently change. "
                "Pass --overwrite to replace it, or --name to prepare under another name."
            )
    if remote:
        _upload(out_dir, df, manifest)
    else:
        _write_atomically(out_dir, df, manifest, overwrite)
    return PrepareResult(out_dir, manifest, summary, table=table)


def _check_apart(source: str | Path, out_dir: Path) -> None:
    """The source must not be, lie inside, or contain the output directory: prepare writes (and
    with --overwrite replaces) that directory, which would change or delete the source."""
    src, out = storage.local_path(source), out_dir.resolve()
    where = (
        "is"
        if src == out
        else "is inside"
        if out in src.parents
        else "contains"
        if src in out.parents
        else None
    )
    if where:
        raise ValueError(
            f"--source {source} {where} the output directory {out_dir}; prepare writes there, so "
            "the source must lie outside it. Pass another --data-dir or --name."
        )


def _prepare_manifest(path: str | Path) -> dict | None:
    """The manifest at `path` if `prepare` wrote it (it has prepare's keys), else None."""
    try:
        m = json.loads(storage.read_text(path))
    except (OSError, ValueError):  # missing, unreadable, or not JSON
        return None
    return m if isinstance(m, dict) and all(k in m for k in _MANIFEST_KEYS) else None


def _existing(out_dir: Path | str, overwrite: bool) -> dict | None:
    """The manifest of what prepare wrote at `out_dir` earlier; None when there is nothing.

    Anything else there is refused, so prepare never replaces what it did not create: locally
    even with --overwrite (replacing means removing the folder); on shared storage, where only
    images.parquet and manifest.json are written and nothing is removed, unless --overwrite.
    """
    manifest = storage.join(out_dir, MANIFEST_FILE)
    if storage.is_remote(out_dir):
        prev = _prepare_manifest(manifest) if storage.is_file(manifest) else None
        if prev is None and storage.exists(out_dir) and not overwrite:
            raise FileExistsError(
                f"{out_dir} exists and holds no manifest written by prepare; pass --overwrite to "
                f"write {IMAGES_FILE} and {MANIFEST_FILE} there anyway, or choose another --name."
            )
        return prev
    out_dir = Path(out_dir)
    if not os.path.lexists(out_dir):
        return None
    prev = _prepare_manifest(manifest) if out_dir.is_dir() and not out_dir.is_symlink() else None
    if prev is None:
        raise FileExistsError(
            f"{out_dir} exists and is not a data set written by prepare (no {MANIFEST_FILE} of "
            "prepare's in a plain folder); prepare never replaces it, even with --overwrite. "
            "Choose another --name or --data-dir."
        )
    extra = sorted(set(os.listdir(out_dir)) - {IMAGES_FILE, MANIFEST_FILE, CACHE_DIR})
    if extra and overwrite:
        raise FileExistsError(
            f"{out_dir} holds files prepare did not write ({', '.join(extra[:5])}); "
            "--overwrite would delete them, so it is refused. Move them out first."
        )
    return prev


def _write_files(dest: Path, df: pd.DataFrame, manifest: dict) -> None:
    cols = ["path", "label", "label_id", "group", "split", "sha256", "width", "height", "format"]
    cols += ["mode", "dhash", "image"]
    table = pa.Table.from_pandas(df[cols].astype({"dhash": "uint64"}), preserve_index=False)
    # row groups of ~1k images keep reads of a column subset cheap
    pq.write_table(table, dest / IMAGES_FILE, row_group_size=1024)
    (dest / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))


def _new_sibling(out_dir: Path) -> Path:
    """A new hidden folder next to `out_dir`. Made with mode 0o777 so the umask decides, as for
    any folder a user creates (mkdtemp's 0700 made shared data folders unreadable to a team)."""
    while True:
        tmp = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue


def _write_atomically(out_dir: Path, df: pd.DataFrame, manifest: dict, overwrite: bool) -> None:
    """Write into a temporary sibling and rename, so a failure never leaves half a data set.

    A folder already there is checked again (minutes may have passed since the first check),
    renamed aside, replaced, and only then removed: it is one prepare wrote (`_existing`).
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(out_dir)
    aside = None
    try:
        _write_files(tmp, df, manifest)
        if os.path.lexists(out_dir):
            _existing(out_dir, overwrite)
            if not overwrite:
                raise FileExistsError(f"{out_dir} appeared while preparing; pass --overwrite")
            aside = tmp.with_suffix(".old")
            os.rename(out_dir, aside)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            if aside is not None:
                os.rename(aside, out_dir)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside)


def _upload(out_uri: str, df: pd.DataFrame, manifest: dict) -> None:
    """Object stores have no rename: the manifest is removed first and uploaded last, so a reader
    finds no data set (NotPreparedError) or a complete one, never a manifest over other images."""
    with tempfile.TemporaryDirectory() as tmp:
        _write_files(Path(tmp), df, manifest)
        storage.delete_file(storage.join(out_uri, MANIFEST_FILE))
        storage.upload(Path(tmp) / IMAGES_FILE, storage.join(out_uri, IMAGES_FILE))
        storage.upload(Path(tmp) / MANIFEST_FILE, storage.join(out_uri, MANIFEST_FILE))
