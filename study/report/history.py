"""Plain data about the study over time: best-so-far against trial number and wall time, each
trial's span with why it stopped, and how many trials ran at once (pandas, no Plotly).

Times come from epochs.parquet's ``time`` column (the Unix time of each reported epoch); a trial
starts one epoch duration (``epoch_s``) before its first report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from study.results.statistics import rank_column

# The runner gives trial n of an Optuna study the seed study_seed * SEED_STRIDE + n.
SEED_STRIDE = 10_000


def optuna_numbers(trials: pd.DataFrame, study_seed: Any) -> pd.Series | None:
    """Optuna's trial number per trial, from its seed (see study.tuning.searcher); None if the seeds
    do
    not fit that rule (another runner, or no study seed)."""
    if (
        "config/seed" not in trials
        or isinstance(study_seed, bool)
        or not isinstance(study_seed, int)
    ):
        return None
    n = pd.to_numeric(trials["config/seed"], errors="coerce") - study_seed * SEED_STRIDE
    if n.isna().any() or not n.between(0, SEED_STRIDE - 1).all():
        return None
    return n.astype(int)


def trial_numbers(trials: pd.DataFrame, study_seed: Any) -> pd.Series:
    """Optuna's trial numbers where known, else the order of the trial ids."""
    numbers = optuna_numbers(trials, study_seed)
    if numbers is not None:
        return numbers
    return (trials["trial_id"].astype(str).rank(method="first") - 1).astype(int)


def best_so_far(values: pd.Series, larger: bool) -> pd.Series:
    """Running best of ``values`` (NaN-skipping): cummax when larger is better, else cummin."""
    v = values.astype(float)
    return v.cummax() if larger else v.cummin()


def by_trial(trials: pd.DataFrame, settings: dict[str, Any], study_seed: Any) -> pd.DataFrame:
    """Each trial's result in trial-number order with the best result so far."""
    column, larger = rank_column(settings)
    t = trials.assign(number=trial_numbers(trials, study_seed)).sort_values("number")
    t = t[t[column].notna()]
    return pd.DataFrame(
        {
            "number": t["number"].to_numpy(),
            "trial_id": t["trial_id"].astype(str).to_numpy(),
            "value": t[column].astype(float).to_numpy(),
            "best": best_so_far(t[column], larger).to_numpy(),
            "status": t["status"].astype(str).to_numpy(),
            "model": t["model"].astype(str).to_numpy(),
        }
    )


def _times(epochs: pd.DataFrame | None) -> pd.DataFrame | None:
    if epochs is None or "time" not in epochs or epochs["time"].isna().all():
        return None
    e = epochs[epochs["time"].notna()].copy()
    if not isinstance(e["time"].dtype, pd.DatetimeTZDtype):  # Unix seconds (schema < 3)
        e["time"] = pd.to_datetime(e["time"].astype(float), unit="s", utc=True)
    return e.sort_values("time", kind="stable")


def by_time(epochs: pd.DataFrame | None, settings: dict[str, Any]) -> pd.DataFrame | None:
    """Best validation accuracy (or loss) reported so far, at each reported epoch's time."""
    e = _times(epochs)
    metric, larger = settings.get("metric", "val_acc"), settings.get("mode", "max") == "max"
    if e is None:
        return None
    if metric not in e:
        metric, larger = "val_acc", True
    return pd.DataFrame(
        {
            "time": e["time"].to_numpy(),
            "trial_id": e["trial_id"].astype(str).to_numpy(),
            "value": e[metric].astype(float).to_numpy(),
            "best": best_so_far(e[metric], larger).to_numpy(),
        }
    )


def timeline(trials: pd.DataFrame, epochs: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per trial with epochs: start, end, status, why it ended, epochs, model."""
    e = _times(epochs)
    if e is None:
        return None
    took = (
        pd.to_timedelta(e["epoch_s"].fillna(0).astype(float), unit="s")
        if "epoch_s" in e
        else pd.to_timedelta(0, unit="s")
    )
    e = e.assign(began=e["time"] - took)
    span = e.groupby("trial_id").agg(
        start=("began", "min"), end=("time", "max"), epochs=("epoch", "max")
    )
    info = trials.set_index(trials["trial_id"].astype(str))
    reason = info["status_reason"] if "status_reason" in info else pd.Series(dtype=object)
    span.index = span.index.astype(str)
    out = (
        span.assign(
            status=info["status"].reindex(span.index).fillna("unknown").astype(str),
            reason=reason.reindex(span.index).fillna("").astype(str),
            model=info["model"].reindex(span.index).fillna("").astype(str),
        )
        .rename_axis("trial_id")
        .reset_index()
    )
    return out.sort_values("start", kind="stable").reset_index(drop=True)


def concurrency(spans: pd.DataFrame) -> pd.DataFrame:
    """Trials running at each start or end time (a step function: +1 at a start, -1 at an end;
    at equal times ends come first, so back-to-back trials do not count as overlapping)."""
    events = pd.concat(
        [
            pd.DataFrame({"time": spans["start"], "delta": 1}),
            pd.DataFrame({"time": spans["end"], "delta": -1}),
        ]
    ).sort_values(["time", "delta"], kind="stable")
    return pd.DataFrame(
        {"time": events["time"].to_numpy(), "running": np.cumsum(events["delta"].to_numpy())}
    )
