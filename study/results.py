"""The study directory's tables: trials / epochs / predictions Parquet files and study.json.

Written from the driver as results arrive (a Tune callback), atomically (write + rename locally,
one complete upload on s3:// or gs://), so a crash loses nothing already finished and a reader never
sees half a file. Every path here may be a local path or a URI (see `study.storage`).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from ray import tune

from study import storage
from study.spaces import cover_space, describe

TRIALS, EPOCHS, PREDICTIONS, GRADCAM, STUDY_JSON = (
    "trials.parquet",
    "epochs.parquet",
    "predictions.parquet",
    "gradcam.parquet",
    "study.json",
)
# In every Parquet file's key-value metadata. 2: typed config/<name> columns from the space's
# declared hyperparameters (JSON-encoded where a column mixes types), a `study` column.
SCHEMA_VERSION = 2
EPOCH_COLUMNS = [
    "trial_id",
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_macro_f1",
    "epoch_s",
    "images_per_s",
    "micro_batch",
    "lr",
    "time",
]
# A config column's dtype follows the Python type of its values. A column whose values do not
# share one of these types (a categorical like ["none", "backbone", 1], None among the choices, a
# list or dict) is a string column holding json.dumps(value) per row: '"none"', '1' and 'null'
# (the value None) stay apart, and a trial without that parameter has a null. Such columns are
# listed in df.attrs["json_columns"] and marked {"encoding": "json"} in their Parquet field
# metadata; `decode_json_columns` turns them back into the values.
JSON = "json"
JSON_COLUMNS = "json_columns"
_DTYPES = {bool: "boolean", int: "Int64", float: "float64", str: "string"}
_KINDS = {"int": 0, "float": 0.0}  # a value of each declared numeric kind, for its dtype


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    """`df` with `schema_version` in the file's metadata and its JSON columns marked."""
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    encoded = set(df.attrs.get(JSON_COLUMNS, ()))
    schema = pa.schema(
        [f.with_metadata({"encoding": JSON}) if f.name in encoded else f for f in schema],
        metadata={**(schema.metadata or {}), b"schema_version": str(SCHEMA_VERSION).encode()},
    )
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, schema=schema)
    storage.write_bytes(path, buf.getvalue())


def write_json(obj: dict, path: str | Path) -> None:
    storage.write_text(path, json.dumps(obj, indent=2, default=str))


def read_json(path: str | Path) -> dict:
    return json.loads(storage.read_text(path))


def read_parquet(path: str | Path) -> pd.DataFrame | None:
    """The table at `path`, or None if there is no such file."""
    return pd.read_parquet(io.BytesIO(storage.read_bytes(path))) if storage.is_file(path) else None


def read_table(study_dir: str | Path, name: str) -> pd.DataFrame | None:
    return read_parquet(storage.join(study_dir, name))


def decode_json_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table read back with its JSON columns decoded (object columns of the values;
    pd.NA where a trial had no such value, None where the value was None)."""
    out = df.copy()
    for col in df.attrs.get(JSON_COLUMNS, ()):
        out[col] = pd.Series(
            [pd.NA if pd.isna(v) else json.loads(v) for v in df[col]], index=df.index, dtype=object
        )
    return out


def config_values(config: dict[str, Any]) -> dict[str, Any]:
    """The config and the raw suggested values behind it, flat: name -> value. Every
    hyperparameter in study.json gets a column (the config's value where the config has the
    same key), and `suggested` keeps the raw suggestions whole (a JSON object; the report reads
    it, and it holds a sampled value even where the config overrides it, as --smoke-test does)."""
    return {**config.get("suggested", {}), **config}


def value_dtype(values: Iterable[Any]) -> str:
    """The column dtype that holds all these values losslessly (JSON unless they share a type)."""
    types = {type(v.item() if isinstance(v, np.generic) else v) for v in values}
    return _DTYPES.get(types.pop(), JSON) if len(types) == 1 else JSON


def config_dtypes(hyperparameters: dict[str, dict], configs: Iterable[dict]) -> dict[str, str]:
    """`config/<name>` column -> dtype, from the declared hyperparameters (as study.json records
    them) and example configs (for the constants a space returns), so the schema never depends
    on which trials ran or which value came first."""
    values: dict[str, list] = {}
    for name, spec in hyperparameters.items():
        kind = spec["kind"]
        values[name] = list(spec["choices"]) if kind == "categorical" else [_KINDS[kind]]
    for cfg in configs:
        for k, v in config_values(cfg).items():
            values.setdefault(k, []).append(v)
    return {f"config/{k}": value_dtype(v) for k, v in sorted(values.items())}


def declared_columns(space_fn, settings, constants: dict[str, Any]) -> dict[str, str]:
    """`config_dtypes` of a space: its covering trials meet every hyperparameter and every branch
    (so every constant) it has; the run's constants and the per-trial seed join them."""
    cover = cover_space(space_fn, settings)
    hyperparameters = {name: describe(d) for name, d in cover.distributions.items()}
    examples = [{**constants, **c, "seed": 0, "suggested": {}} for c in cover.configs]
    return config_dtypes(hyperparameters, examples)


_MISSING = object()  # a trial without this config value (unlike None, a value of its own)


def trials_frame(rows: list[dict[str, Any]], dtypes: dict[str, str]) -> pd.DataFrame:
    """The trials table from rows holding raw config values: typed config columns (declared ones
    even when no trial has them yet, undeclared ones by their values), JSON where mixed."""
    found = {k for r in rows for k in r if k.startswith("config/")}
    names = [*dtypes, *sorted(found - set(dtypes))]
    df = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("config/")} for r in rows])
    encoded = []
    for col in names:
        values = [r.get(col, _MISSING) for r in rows]
        dtype = dtypes.get(col) or value_dtype(v for v in values if v is not _MISSING)
        if dtype == JSON:
            encoded.append(col)
            values = [None if v is _MISSING else json.dumps(v) for v in values]
            dtype = "string"
        df[col] = pd.array([None if v is _MISSING else v for v in values], dtype=dtype)
    df.attrs[JSON_COLUMNS] = encoded
    return df


def _raw_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a trials table read back, with raw config values (missing ones left out), as
    `summarise_trial` makes them."""
    rows = decode_json_columns(table.drop(columns=["study"], errors="ignore")).to_dict("records")
    return [
        {k: v for k, v in r.items() if not (k.startswith("config/") and _absent(v))} for r in rows
    ]


def _absent(value: Any) -> bool:
    return value is pd.NA or (isinstance(value, float) and np.isnan(value))


def trial_status(last: dict[str, Any] | None, errored: bool, error: str = "") -> tuple[str, str]:
    """(status, reason) from how a trial ended: its own end_reason, an error, or ASHA's stop."""
    if errored:
        return "errored", error or "the trial raised an error"
    if not last:
        return "running", ""
    reason, note = last.get("end_reason", ""), last.get("restore_note", "")
    note = f" ({note})" if note else ""
    if reason == "diverged":
        return "diverged", (last.get("error", "") or "loss became NaN/inf") + note
    if reason == "oom":
        return "errored", last.get("error", "out of memory") + note
    if reason:
        return "finished", reason + note
    return "stopped", f"stopped early by ASHA after epoch {last.get('epoch')}{note}"


def summarise_trial(
    trial_id: str,
    config: dict,
    epochs: pd.DataFrame,
    last: dict | None,
    status: tuple[str, str],
    dataset: str,
) -> dict[str, Any]:
    e = epochs.sort_values("epoch")
    acc = e["val_acc"].to_numpy(float)
    return {
        "trial_id": trial_id,
        "status": status[0],
        "status_reason": status[1],
        "epochs": len(e),
        "val_acc_avg": float(np.nanmean(acc)) if len(acc) else np.nan,
        "val_acc_max": float(np.nanmax(acc)) if len(acc) else np.nan,
        "val_acc_last": float(acc[-1]) if len(acc) else np.nan,
        "val_loss_last": float(e["val_loss"].iloc[-1]) if len(e) else np.nan,
        "best_epoch": int(e["epoch"].iloc[int(np.nanargmax(acc))])
        if len(acc) and np.isfinite(acc).any()
        else 0,
        "test_acc": np.nan,
        "test_macro_f1": np.nan,
        "test_acc_ci_low": np.nan,
        "test_acc_ci_high": np.nan,
        "params": int((last or {}).get("params", 0)),
        "wall_s": float(e["epoch_s"].sum()) if len(e) else 0.0,
        "epoch_s_mean": float(e["epoch_s"].mean()) if len(e) else np.nan,
        "node": (last or {}).get("node", ""),
        "device": (last or {}).get("device", ""),
        "model": config.get("model", ""),
        "dataset": dataset,
        "seed": int(config.get("seed", 0)),
        **{f"config/{k}": v for k, v in sorted(config_values(config).items())},
    }


class ResultsWriter(tune.Callback):
    """Keeps trials.parquet and epochs.parquet up to date from the driver."""

    # Every result is flushed by default: a driver killed between two flushes would otherwise lose
    # epochs of unfinished trials that a resume cannot report again (they continue after them).
    def __init__(
        self,
        study_dir: str | Path,
        dataset: str,
        columns: dict[str, str] | None = None,
        flush_every_s: float = 0.0,
    ):
        self.dir = storage.absolute(study_dir)
        self.study = storage.basename(self.dir)  # the study's name: its directory's
        self.dataset = dataset
        self.columns = dict(columns or {})  # config column -> dtype (see `declared_columns`)
        self.flush_every_s = flush_every_s
        self._last_flush = 0.0
        self._loaded = False
        self.epochs: list[dict] = []
        self.trials: dict[str, dict] = {}
        self._configs: dict[str, dict] = {}
        self._last: dict[str, dict] = {}

    def _load_once(self) -> None:
        """Start from what is on disk. Lazily, because Tuner.restore unpickles this callback as it
        was constructed (empty), and a resumed study must keep the rows of its first run."""
        if self._loaded:
            return
        self._loaded = True
        old_e, old_t = read_table(self.dir, EPOCHS), read_table(self.dir, TRIALS)
        self.epochs = old_e.to_dict("records") if old_e is not None else []
        self.trials = {r["trial_id"]: r for r in _raw_rows(old_t)} if old_t is not None else {}

    def setup(self, **info) -> None:
        self._load_once()

    def _update(self, trial, status: tuple[str, str] | None = None) -> None:
        tid = trial.trial_id
        cfg = self._configs.setdefault(tid, dict(trial.config))
        last = self._last.get(tid)
        mine = pd.DataFrame([r for r in self.epochs if r["trial_id"] == tid], columns=EPOCH_COLUMNS)
        # no status given: the trial is still training, whatever its last end_reason says
        self.trials[tid] = summarise_trial(
            tid, cfg, mine, last, status or ("running", ""), self.dataset
        )

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._load_once()
        row = {c: result.get(c) for c in EPOCH_COLUMNS if c not in ("trial_id", "time")}
        row |= {"trial_id": trial.trial_id, "time": result.get("timestamp", time.time())}
        # a retried trial re-reports epochs after its checkpoint: keep one row per epoch
        self.epochs = [
            r
            for r in self.epochs
            if not (r["trial_id"] == trial.trial_id and r["epoch"] == row["epoch"])
        ]
        self.epochs.append(row)
        self._last[trial.trial_id] = result
        self._update(trial)
        print(
            f"[{trial.trial_id}] epoch {row['epoch']}: train_loss {row['train_loss']:.3f} "
            f"val_acc {row['val_acc']:.3f} ({row['epoch_s']:.1f} s, "
            f"{row['images_per_s']:.0f} img/s) {result.get('end_reason', '')}",
            flush=True,
        )
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, trial_status(self._last.get(trial.trial_id), False))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, trial_status(None, True, _error_text(trial)))

    def _end(self, trial, status: tuple[str, str]) -> None:
        self._load_once()
        self._update(trial, status)
        print(f"[{trial.trial_id}] {status[0]}: {status[1]}", flush=True)
        self.flush()

    def on_experiment_end(self, trials, **info):
        self.flush()

    def flush(self) -> None:
        self._load_once()
        self._last_flush = time.monotonic()
        if self.epochs:
            e = pd.DataFrame(self.epochs, columns=EPOCH_COLUMNS)
            e.insert(0, "study", self.study)
            write_parquet(e.sort_values(["trial_id", "epoch"]), storage.join(self.dir, EPOCHS))
        if self.trials:
            t = trials_frame(list(self.trials.values()), self.columns)
            t.insert(0, "study", self.study)
            write_parquet(t, storage.join(self.dir, TRIALS))


def _error_text(trial) -> str:
    """The last line of the trial's traceback: the reason, without the stack."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text().strip() if path else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "the trial raised an error"
