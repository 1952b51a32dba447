"""Reading and writing the study directory's tables (declared in `study.results.schema`), without
Ray.

Files are written atomically (write + rename locally, one complete upload on s3:// or gs://), so a
reader never sees half a file. Epoch rows are appended to per-trial logs while a study runs
(`append_epoch`, O(1) per result) and merged into epochs.parquet at the end (`compact_epochs`);
`read_table` merges whatever logs are left (a killed driver's), so no reader misses an epoch.
Every path here may be a local path or a URI (see `study.storage`). A file that cannot be read
(truncated, damaged, not what its name says) or written (disk full, read-only) is a
`study.results.errors.StudyFileError` naming it and what to do, never a library's traceback.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study import storage
from study.results.errors import StudyFileError, why
from study.results.schema import (
    EPOCH_COLUMNS,
    EPOCH_PARTS,
    EPOCHS,
    GRADCAM,
    MATRIX,
    PER_SPACE,
    SCHEMA_VERSION,
    TABLES,
)

# A config column's dtype follows the Python type of its values. A column whose values do not
# share one of these types (a categorical like ["none", "backbone", 1], None among the choices, a
# list or dict) is a string column holding json.dumps(value) per row: '"none"', '1' and 'null'
# (the value None) stay apart, and a trial without that parameter has a null. Such columns are
# listed in df.attrs["json_columns"] and marked {"encoding": "json"} in their Parquet field
# metadata; `decode_json_columns` turns them back into the values.
JSON = "json"


JSON_COLUMNS = "json_columns"


_ARROW = {
    "string": pa.string(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "binary": pa.binary(),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
}


_PER_SPACE = {"bool", "int64", "double", "string"}


def arrow_type(declared: str, side: int = 0) -> pa.DataType | None:
    """A declared type as Arrow's (None for a per-space column: its values decide)."""
    if declared == MATRIX:
        return pa.list_(pa.list_(pa.float32(), side), side)
    return _ARROW.get(declared)


def _timestamps(values: pd.Series) -> pd.Series:
    """Unix seconds (or timestamps) as UTC timestamps to the microsecond, Parquet's unit."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.floor("us").dt.as_unit("us")
    micros = (pd.to_numeric(values, errors="coerce") * 1e6).round()
    return pd.to_datetime(micros, unit="us", utc=True).dt.as_unit("us")


def _study_name(path: str | Path) -> str:
    """The study a table file belongs to: its folder's name."""
    return storage.basename(str(path).rstrip("/").rsplit("/", 1)[0])


def _declared(df: pd.DataFrame, path: str | Path) -> tuple[pd.DataFrame, pa.Schema]:
    """`df` in its table's declared layout: declared columns in order (null where `df` lacks
    one), a `study` column, values converted where pandas holds them otherwise (epoch times as
    Unix seconds, Grad-CAM maps as flat lists); columns not declared follow, as inferred."""
    table = TABLES[storage.basename(path)]
    df = df.copy()
    if "study" not in df:
        df.insert(0, "study", _study_name(path))
    if table.file == EPOCHS and "time" in df:
        df["time"] = _timestamps(df["time"])
    side = 0
    if table.file == GRADCAM and len(df):
        side = int(df["cam_size"].iloc[0])
        df["cam"] = [np.asarray(c, np.float32).reshape(side, side).tolist() for c in df["cam"]]
    inferred = pa.Schema.from_pandas(df, preserve_index=False)
    order, fields = [], []
    for col in table.columns:
        names = [n for n in df.columns if col.matches(n)] if col.prefix else [col.name]
        for name in names:
            if name not in df:
                df[name] = None
            typ = arrow_type(col.type, side)
            if typ is None:  # per space: as inferred, one string type for all text
                typ = inferred.field(name).type
                typ = pa.string() if typ == pa.large_string() else typ
            order.append(name)
            fields.append(pa.field(name, typ))
    for name in df.columns:
        if name not in order:
            order.append(name)
            fields.append(inferred.field(name))
    return df[order], pa.schema(fields)


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    """`df` with `schema_version` in the file's metadata and its JSON columns marked; a declared
    table (study.results.schema) in its declared layout and types."""
    if storage.basename(path) in TABLES:
        df, schema = _declared(df, path)
    else:
        schema = pa.Schema.from_pandas(df, preserve_index=False)
    encoded = set(df.attrs.get(JSON_COLUMNS, ()))
    schema = pa.schema(
        [f.with_metadata({"encoding": JSON}) if f.name in encoded else f for f in schema],
        metadata={**(schema.metadata or {}), b"schema_version": str(SCHEMA_VERSION).encode()},
    )
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, schema=schema)
    storage.write_bytes(path, buf.getvalue())


def check_schema(schema: pa.Schema, file: str) -> list[str]:
    """How a written file's schema differs from its declaration (empty: it matches)."""
    table, problems = TABLES[file], []
    names = set(schema.names)
    for col in table.columns:
        if not col.prefix and col.name not in names:
            problems.append(f"{file}: declared column {col.name} is missing")
    for f in schema:
        col = table.column(f.name)
        if col is None:
            problems.append(f"{file}: column {f.name} ({f.type}) is not declared")
        elif col.type == PER_SPACE:
            if str(f.type) not in _PER_SPACE:
                problems.append(f"{file}: {f.name} is {f.type}, expected one of {_PER_SPACE}")
        elif col.type == MATRIX:
            side = f.type.list_size if pa.types.is_fixed_size_list(f.type) else 0
            if f.type != arrow_type(MATRIX, side) or side < 1:
                problems.append(f"{file}: {f.name} is {f.type}, expected {MATRIX}")
        elif f.type != arrow_type(col.type):
            problems.append(f"{file}: {f.name} is {f.type}, expected {col.type}")
    if schema.metadata.get(b"schema_version") != str(SCHEMA_VERSION).encode():
        problems.append(f"{file}: schema_version is not {SCHEMA_VERSION}")
    return problems


def read_schema(path: str | Path) -> pa.Schema:
    data = storage.read_bytes(path)
    try:
        return pq.read_schema(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise StudyFileError(str(path), f"not a readable Parquet file ({why(e)})") from e


def write_json(obj: dict, path: str | Path) -> None:
    storage.write_text(path, json.dumps(obj, indent=2, default=str))


def read_json(path: str | Path) -> dict:
    """A JSON file of the study; a StudyFileError naming it if it is not JSON (or not text)."""
    data = storage.read_bytes(path)
    try:
        obj = json.loads(data.decode())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise StudyFileError(str(path), f"not valid JSON ({why(e)})") from e
    if not isinstance(obj, dict):  # every JSON file of a study is an object
        raise StudyFileError(str(path), f"not valid JSON for it (a {type(obj).__name__})")
    return obj


def read_parquet(path: str | Path) -> pd.DataFrame | None:
    """The table at `path`, or None if there is no such file; a StudyFileError naming it if it
    is not a readable Parquet file (truncated, damaged)."""
    if not storage.is_file(path):
        return None
    data = storage.read_bytes(path)
    try:
        return pd.read_parquet(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as e:  # ArrowInvalid is a ValueError too
        raise StudyFileError(str(path), f"not a readable Parquet file ({why(e)})") from e


def read_table(study_dir: str | Path, name: str) -> pd.DataFrame | None:
    """A table of the study as its readers want it: epochs with the rows still in the per-trial
    logs, epoch times as timestamps and Grad-CAM maps as 2-D arrays (also from older files)."""
    df = read_parquet(storage.join(study_dir, name))
    if name == EPOCHS:
        df = _with_parts(study_dir, df)
    if df is None:
        return None
    if name == EPOCHS and "time" in df:
        df["time"] = _timestamps(df["time"])
    if name == GRADCAM and "cam" in df:
        df["cam"] = [_matrix(c, s) for c, s in zip(df["cam"], df["cam_size"], strict=True)]
    return df


def _matrix(cam: Any, side: int) -> np.ndarray:
    """A Grad-CAM map as a 2-D float32 array: from a nested list (schema 3) or a flat one."""
    rows = [np.asarray(r, np.float32) for r in cam]
    arr = np.stack(rows) if rows and rows[0].ndim else np.asarray(rows, np.float32)
    return arr.reshape(int(side), int(side))


def decode_json_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table read back with its JSON columns decoded (object columns of the values;
    pd.NA where a trial had no such value, None where the value was None)."""
    out = df.copy()
    for col in df.attrs.get(JSON_COLUMNS, ()):
        out[col] = pd.Series(
            [pd.NA if pd.isna(v) else json.loads(v) for v in df[col]], index=df.index, dtype=object
        )
    return out


# --- epochs: per-trial append logs, merged into epochs.parquet ------------------------------


def part_path(study_dir: str | Path, trial_id: str) -> str:
    return storage.join(study_dir, EPOCH_PARTS, f"{trial_id}.jsonl")


def _line(row: dict[str, Any]) -> str:
    # NaN/inf (a diverged epoch) as JSON's NaN/Infinity, which json.loads reads back
    return json.dumps({k: _plain(v) for k, v in row.items()}) + "\n"


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def append_epoch(study_dir: str | Path, row: dict[str, Any], trial_rows: list[dict]) -> None:
    """Log one epoch row of a trial before anything else happens to it: locally one appended
    line (O(1)); an object store cannot append, so there the trial's log (`trial_rows`, this row
    included: at most max_epochs lines) is uploaded whole."""
    path = part_path(study_dir, row["trial_id"])
    if storage.is_remote(path):
        storage.write_text(path, "".join(_line(r) for r in trial_rows))
        return
    local = Path(path)
    with storage.writing(local):  # a full disk: one line naming the log
        local.parent.mkdir(parents=True, exist_ok=True)
        with local.open("ab+") as f:  # in the page cache at return: a killed driver keeps it
            # a line cut short (a killed driver, a full disk) is ended first, so that this row
            # is not glued to it: readers skip the cut line and keep this one
            if f.seek(0, io.SEEK_END) and _last_byte(f) != b"\n":
                f.write(b"\n")
            f.write(_line(row).encode())


def _last_byte(f: io.BufferedRandom) -> bytes:
    f.seek(-1, io.SEEK_END)
    return f.read(1)


def _part_names(study_dir: str | Path) -> list[str]:
    parts = storage.join(study_dir, EPOCH_PARTS)
    if not storage.is_remote(parts):
        d = Path(parts)
        return sorted(p.name for p in d.glob("*.jsonl")) if d.is_dir() else []
    fs, root = storage.resolve(parts)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.base_name.endswith(".jsonl"))


def read_parts(study_dir: str | Path) -> list[dict[str, Any]]:
    """Every logged epoch row. A line that is not JSON is skipped: one cut short by a killed
    driver (which a resumed driver's next line then follows). Bytes that are not text are never
    written by the driver (its lines are ASCII JSON): the log is damaged, a StudyFileError, as
    skipping them would silently drop the rows they hide."""
    rows = []
    for name in _part_names(study_dir):
        path = storage.join(study_dir, EPOCH_PARTS, name)
        try:
            text = storage.read_bytes(path).decode()
        except UnicodeDecodeError as e:
            raise StudyFileError(path, f"not an epoch log (byte {e.start} is not text)") from e
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "trial_id" in row and "epoch" in row:
                rows.append(row)
    return rows


def epochs_frame(rows: Iterable[dict[str, Any]], study: str) -> pd.DataFrame:
    """Epoch rows as the epochs table, one row per (trial, epoch), in a fixed layout."""
    df = pd.DataFrame(list(rows), columns=EPOCH_COLUMNS)
    df.insert(0, "study", study)
    df["epoch"] = df["epoch"].astype("int64")
    df["micro_batch"] = pd.array(df["micro_batch"].map(_int_or_none), dtype="Int64")
    for col in ("train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "epoch_s"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("images_per_s", "lr"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["time"] = _timestamps(df["time"])
    return df.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)


def _int_or_none(v: Any) -> int | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)


def _with_parts(study_dir: str | Path, df: pd.DataFrame | None) -> pd.DataFrame | None:
    rows = read_parts(study_dir)
    if not rows:
        return df
    logged = epochs_frame(rows, storage.basename(study_dir))
    if df is None:
        return logged.drop_duplicates(["trial_id", "epoch"], keep="last", ignore_index=True)
    if "time" in df:
        df = df.assign(time=_timestamps(df["time"]))
    # a logged row is newer than the compacted one (a retried trial re-reports its epoch)
    both = pd.concat([df, logged], ignore_index=True)
    both = both.drop_duplicates(["trial_id", "epoch"], keep="last")
    return both.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)


def compact_epochs(study_dir: str | Path, df: pd.DataFrame) -> None:
    """Write every epoch row to epochs.parquet, then delete the logs this run wrote into it (a
    crash in between leaves rows in both, which readers merge)."""
    names = _part_names(study_dir)
    write_parquet(df, storage.join(study_dir, EPOCHS))
    for name in names:
        storage.delete_file(storage.join(study_dir, EPOCH_PARTS, name))
    parts = storage.join(study_dir, EPOCH_PARTS)
    if names and not storage.is_remote(parts):
        try:
            Path(parts).rmdir()  # only if empty: never what another writer added meanwhile
        except OSError:
            pass
