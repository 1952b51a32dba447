"""The driver's writer of a study's tables: a Tune callback (the layout is `study.schema`, the
Ray-free reading and writing `study.tables`, whose names this module re-exports).

Each result costs O(1): its epoch row is appended to the trial's log (`study.tables.append_epoch`)
before anything else, so a killed driver loses no epoch; trials.parquet is rewritten when a
trial first reports and when it ends, and at most every `flush_every_s` in between; the logs are
merged into epochs.parquet when the experiment ends (and by every reader before that).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from study import storage
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
    config_dtypes,
    config_values,
    decode_json_columns,
    epochs_frame,
    raw_rows,
    read_json,
    read_parquet,
    read_table,
    summarise_trial,
    trial_status,
    trials_frame,
    value_dtype,
    write_json,
    write_parquet,
)


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
        first = tid not in self.trials
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


def _error_text(trial) -> str:
    """The last line of the trial's traceback: the reason, without the stack."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text().strip() if path else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "the trial raised an error"
