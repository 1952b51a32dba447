"""trials.parquet's owner: one row per trial (`trial_status`, `summarise_trial`), its typed
config columns, and the only writes of the table (`write_trials` while tuning, `record_test_scores`
after the test-split evaluation). Ray-free: the report's fixture and the unit tests build their
rows here, and `study.tuning.callbacks.ResultsWriter` (the Tune callback) calls these functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study import storage
from study.results.schema import TABLES, TRIALS
from study.results.tables import (
    JSON,
    JSON_COLUMNS,
    decode_json_columns,
    read_table,
    write_parquet,
)
from study.spaces.cover import cover_space, describe
from study.spaces.settings import stopped_early

# the trials.parquet columns measured on the test split: NaN until `record_test_scores`
TEST_COLUMNS = tuple(c.name for c in TABLES[TRIALS].columns if c.split == "test")


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
    """A trial's trials.parquet row from its config, its epoch rows (epochs.parquet's columns)
    and its last result; config values raw, as `trials_frame` types them."""
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
        **dict.fromkeys(TEST_COLUMNS, np.nan),  # the test split is read once, after tuning
        "params": int((last or {}).get("params", 0)),
        "gflops": float((last or {}).get("gflops", np.nan)),  # NaN: from before the column
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


def write_trials(
    study_dir: str | Path, rows: list[dict[str, Any]], columns: dict[str, str]
) -> None:
    """trials.parquet from `summarise_trial` rows (or `raw_rows` read back), typed by `columns`
    (`declared_columns`), with the study's name in every row."""
    t = trials_frame(rows, columns)
    t.insert(0, "study", storage.basename(study_dir))
    write_parquet(t, storage.join(study_dir, TRIALS))


def record_test_scores(study_dir: str | Path, scores: dict[str, dict[str, float]]) -> None:
    """The test-split scores of the evaluated trials (trial id -> TEST_COLUMNS values) into
    trials.parquet; every other row and column is kept as written."""
    trials = read_table(study_dir, TRIALS)
    if trials is None:
        raise FileNotFoundError(f"{storage.join(study_dir, TRIALS)}: no trials to record scores of")
    unknown = set(scores) - set(trials["trial_id"])
    if unknown:
        raise ValueError(f"{TRIALS}: no trial(s) {sorted(unknown)} to record test scores of")
    for tid, m in scores.items():
        trials.loc[trials["trial_id"] == tid, list(TEST_COLUMNS)] = [m[c] for c in TEST_COLUMNS]
    write_parquet(trials, storage.join(study_dir, TRIALS))
