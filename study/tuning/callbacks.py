"""The driver's Tune callbacks: the writer of a study's tables (the layout is
`study.results.schema`, the Ray-free reading and writing `study.results.tables`, trials.parquet's
rows `study.results.trials`; this module re-exports their names) and the console.

Each result costs O(1): its epoch row is appended to the trial's log
(`study.results.tables.append_epoch`) before anything else, so a killed driver loses no epoch;
trials.parquet is rewritten when a trial first reports and when it ends (O(trials) per trial), and
at most every `flush_every_s` in between; the logs are merged into epochs.parquet when the
experiment ends (and by every reader before that).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from study import storage
from study.console import Progress
from study.results.schema import (
    EPOCH_COLUMNS,
    EPOCHS,
    TRIALS,
)
from study.results.tables import (
    append_epoch,
    compact_epochs,
    epochs_frame,
    read_table,
)
from study.results.trials import (
    raw_rows,
    summarise_trial,
    trial_status,
    write_trials,
)


def _seconds(t: Any) -> float | None:
    """An epoch's time as Unix seconds (rows read back hold timestamps)."""
    if t is None or t is pd.NaT:
        return None
    return t.timestamp() if isinstance(t, pd.Timestamp) else float(t)


LOST = (
    "lost: its driver was killed before Ray saved this trial, so the resume could not continue it "
    "(its epochs are kept)"
)


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
        self._load_once()
        # a trial that a killed driver started after Ray last saved its state: Ray restored
        # without it (and ran another in its place), so nothing else will end its "running" row
        known = {t.trial_id for t in trials}
        for tid, row in self.trials.items():
            if row.get("status") == "running" and tid not in known and tid not in self._stale:
                self.trials[tid] = {**row, "status": "stopped", "status_reason": LOST}
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
            write_trials(self.dir, list(self.trials.values()), self.columns)

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
