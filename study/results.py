"""The driver's Tune callbacks: the writer of a study's tables (the layout is `study.schema`, the
Ray-free reading and writing `study.tables`, whose names this module re-exports) and the console.

Each result costs O(1): its epoch row is appended to the trial's log (`study.tables.append_epoch`)
before anything else, so a killed driver loses no epoch; trials.parquet is rewritten when a
trial first reports and when it ends (O(trials) per trial), and at most every `flush_every_s` in
between; the logs are merged into epochs.parquet when the experiment ends (and by every reader
before that).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from study import storage
from study.console import Progress
from study.settings import stopped_early
from study.spaces import cover_space, describe
from study.tables import (  # noqa: F401 - re-exported: the names callers import from here
    EPOCH_COLUMNS,
    EPOCHS,
    GRADCAM,
    JSON,
    JSON_COLUMNS,
    PREDICTIONS,
    SCHEMA_VERSION,
    STUDY_JSON,
    TRIALS,
    append_epoch,
    compact_epochs,
    decode_json_columns,
    epochs_frame,
    read_json,
    read_parquet,
    read_table,
    write_json,
    write_parquet,
)

_DTYPES = {bool: "boolean", int: "Int64", float: "float64", str: "string"}
_KINDS = {"int": 0, "float": 0.0}  # a value of each declared numeric kind, for its dtype


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


def raw_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a trials table read back, with raw config values (missing ones left out), as
    `summarise_trial` makes them."""
    rows = decode_json_columns(table.drop(columns=["study"], errors="ignore")).to_dict("records")
    return [
        {k: v for k, v in r.items() if not (k.startswith("config/") and _absent(v))} for r in rows
    ]


def _absent(value: Any) -> bool:
    return value is pd.NA or (isinstance(value, float) and np.isnan(value))


def trial_status(last: dict[str, Any] | None, errored: bool, error: str = "") -> tuple[str, str]:
    """(status, reason) from how a trial ended: its own end_reason, an error, or its scheduler's
    stop."""
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
    return "stopped", f"{stopped_early()} after epoch {last.get('epoch')}{note}"


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
    # a diverged trial's epochs hold NaN: no "mean of empty slice" warnings, NaN stays NaN
    finite = acc[np.isfinite(acc)]
    return {
        "trial_id": trial_id,
        "status": status[0],
        "status_reason": status[1],
        "epochs": len(e),
        "val_acc_avg": float(finite.mean()) if len(finite) else np.nan,
        "val_acc_max": float(finite.max()) if len(finite) else np.nan,
        "val_acc_last": float(acc[-1]) if len(acc) else np.nan,
        "val_loss_last": float(e["val_loss"].iloc[-1]) if len(e) else np.nan,
        "best_epoch": int(e["epoch"].iloc[int(np.nanargmax(acc))]) if len(finite) else 0,
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


def declared_columns(space_fn, settings, constants: dict[str, Any]) -> dict[str, str]:
    """`config_dtypes` of a space: its covering trials meet every hyperparameter and every branch
    (so every constant) it has; the run's constants and the per-trial seed join them."""
    cover = cover_space(space_fn, settings)
    hyperparameters = {name: describe(d) for name, d in cover.distributions.items()}
    examples = [{**constants, **c, "seed": 0, "suggested": {}} for c in cover.configs]
    return config_dtypes(hyperparameters, examples)


def _seconds(t: Any) -> float | None:
    """An epoch's time as Unix seconds (rows read back hold timestamps)."""
    if t is None or t is pd.NaT:
        return None
    return t.timestamp() if isinstance(t, pd.Timestamp) else float(t)


class ResultsWriter(tune.Callback):
    """Keeps trials.parquet and epochs.parquet (with its per-trial logs) up to date."""

    def __init__(
        self,
        study_dir: str | Path,
        dataset: str,
        columns: dict[str, str] | None = None,
        flush_every_s: float = 10.0,
    ):
        self.dir = storage.absolute(study_dir)
        self.study = storage.basename(self.dir)  # the study's name: its directory's
        self.dataset = dataset
        self.columns = dict(columns or {})  # config column -> dtype (see `declared_columns`)
        self.flush_every_s = flush_every_s
        self._last_flush = 0.0
        self._loaded = False
        self.epochs: dict[str, dict[int, dict]] = {}  # trial -> epoch -> row
        self.trials: dict[str, dict] = {}  # trial -> its trials.parquet row
        self._stale: dict[str, tuple[str, str]] = {}  # trials whose row is out of date: status
        self._configs: dict[str, dict] = {}
        self._last: dict[str, dict] = {}

    def _load_once(self) -> None:
        """Start from what is on disk. Lazily, because Tuner.restore unpickles this callback as it
        was constructed (empty), and a resumed study must keep the rows of its first run."""
        if self._loaded:
            return
        self._loaded = True
        old_e, old_t = read_table(self.dir, EPOCHS), read_table(self.dir, TRIALS)
        for r in [] if old_e is None else old_e[EPOCH_COLUMNS].to_dict("records"):
            r["time"] = _seconds(r["time"])
            self.epochs.setdefault(r["trial_id"], {})[int(r["epoch"])] = r
        self.trials = {r["trial_id"]: r for r in raw_rows(old_t)} if old_t is not None else {}

    def setup(self, **info) -> None:
        self._load_once()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._load_once()
        tid = trial.trial_id
        row = {c: result.get(c) for c in EPOCH_COLUMNS if c not in ("trial_id", "time")}
        row |= {"trial_id": tid, "time": _seconds(result.get("timestamp", time.time()))}
        mine = self.epochs.setdefault(tid, {})
        # a retried trial re-reports epochs after its checkpoint: keep one row per epoch
        mine[int(row["epoch"])] = row
        append_epoch(self.dir, row, [mine[e] for e in sorted(mine)])
        self._configs.setdefault(tid, dict(trial.config))
        self._last[tid] = result
        first = tid not in self.trials  # its row now: a killed driver leaves no epochs orphaned
        # no status given: the trial is still training, whatever its last end_reason says
        self._stale[tid] = ("running", "")
        if first or time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, trial_status(self._last.get(trial.trial_id), False))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, trial_status(None, True, _error_text(trial)))

    def _end(self, trial, status: tuple[str, str]) -> None:
        self._load_once()
        self._configs.setdefault(trial.trial_id, dict(trial.config))
        self._stale[trial.trial_id] = status
        self.flush()

    def on_experiment_end(self, trials, **info):
        self.flush()
        self.compact()

    def flush(self) -> None:
        """Rewrite trials.parquet with the rows of trials that changed since the last flush."""
        self._load_once()
        self._last_flush = time.monotonic()
        for tid, status in self._stale.items():
            mine = pd.DataFrame(list(self.epochs.get(tid, {}).values()), columns=EPOCH_COLUMNS)
            cfg = self._configs.get(tid, {})
            self.trials[tid] = summarise_trial(
                tid, cfg, mine, self._last.get(tid), status, self.dataset
            )
        self._stale.clear()
        if self.trials:
            t = trials_frame(list(self.trials.values()), self.columns)
            t.insert(0, "study", self.study)
            write_parquet(t, storage.join(self.dir, TRIALS))

    def compact(self) -> None:
        """Every epoch row into epochs.parquet; the per-trial logs go."""
        self._load_once()
        rows = [r for mine in self.epochs.values() for r in mine.values()]
        if rows:
            compact_epochs(self.dir, epochs_frame(rows, self.study))


class ConsoleCallback(tune.Callback):
    """Feeds `study.console.Progress` from Tune: trial start, epoch and end lines, status lines."""

    def __init__(self, total: int, metric: str, mode: str):
        self.progress = Progress(total, metric, mode)
        self._seen: set[str] = set()
        self._seeded = False

    def setup(self, **info) -> None:
        # a resumed driver unpickles this with another process's clock: start afresh
        self.progress.reset()
        self._seen, self._seeded = set(), False

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self._seen:  # a retry after a failure, or a resumed trial
            self.progress.models.setdefault(trial.trial_id, str(trial.config.get("model")))
            return
        self._seen.add(trial.trial_id)
        number = next((i for i, t in enumerate(trials, 1) if t is trial), len(trials))
        self.progress.started(trial.trial_id, trial.config, number)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.progress.result(trial.trial_id, trial.config, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.progress.ended(trial.trial_id, *_ended(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress.ended(trial.trial_id, *trial_status(None, True, _error_text(trial)))

    def on_step_end(self, iteration, trials, **info):
        self.progress.step(self._counts(trials))

    def on_experiment_end(self, trials, **info):
        self.progress.step(self._counts(trials), force=True)

    def _counts(self, trials) -> dict[str, int]:
        if not self._seeded:  # a resumed study: the best of the trials of earlier runs
            self._seeded = True
            for t in trials:
                stats = (getattr(t, "metric_analysis", None) or {}).get(self.progress.metric, {})
                self.progress.models.setdefault(t.trial_id, str(t.config.get("model", "?")))
                self.progress.offer(t.trial_id, stats.get(self.progress.mode))
        counts: dict[str, int] = {}
        for t in trials:
            if t.status == "TERMINATED":
                key = _ended(t)[0]
            else:
                key = {"ERROR": "errored", "RUNNING": "running"}.get(t.status)
            if key:
                counts[key] = counts.get(key, 0) + 1
        return counts


def _ended(trial) -> tuple[str, str]:
    """How a terminated trial ended (one that reported nothing was stopped before its first)."""
    status = trial_status(trial.last_result, False)
    return ("stopped", "ended before its first result") if status[0] == "running" else status


def _error_text(trial) -> str:
    """The last line of the trial's traceback: the reason, without the stack."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text().strip() if path else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "the trial raised an error"
