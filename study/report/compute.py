"""Plain data about the trials, computed from the study's tables (pandas/numpy/optuna, no Plotly).

Each function here feeds one figure or table in ``figures.py``/``page.py``; keeping them free of
drawing code lets the tests check numbers by hand.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from study.metrics import RANK_COLUMNS, rank_column, ranked
from study.report.evaluation import test_accuracy
from study.report.load import ReportInputError, StudyData

STATUSES = ("finished", "stopped", "errored", "diverged", "running")
# Trials whose reported accuracies are final (stopped = ended early by ASHA at a rung).
DONE = ("finished", "stopped")
# study.json settings (metric, mode) -> trials.parquet column that ranks the trials.


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trials per status: every known status (0 if none), unknown ones by name, and 'total'."""
    counts = {s: 0 for s in STATUSES}
    counts.update({str(k): int(v) for k, v in trials["status"].value_counts().items()})
    counts["total"] = len(trials)
    return counts


def compute_used(trials: pd.DataFrame, epochs: pd.DataFrame | None) -> dict[str, Any]:
    """Summed trial wall time, epochs trained and the devices used."""
    devices = trials["device"].value_counts() if "device" in trials else pd.Series(dtype=int)
    n_epochs = len(epochs) if epochs is not None else int(trials["epochs"].fillna(0).sum())
    return {
        "trial_hours": float(trials["wall_s"].fillna(0).sum()) / 3600.0,
        "epochs": int(n_epochs),
        "devices": {str(k): int(v) for k, v in devices.items()},
    }


def rung_epochs(grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """ASHA rungs: grace_period * reduction_factor**k, up to max_epochs (exclusive of the end)."""
    if grace_period < 1 or reduction_factor < 2:
        raise ReportInputError(
            f"settings: need grace_period >= 1 and reduction_factor >= 2, "
            f"got {grace_period} and {reduction_factor}"
        )
    rungs, epoch = [], grace_period
    while epoch < max_epochs:
        rungs.append(epoch)
        epoch *= reduction_factor
    return rungs


def rank_note(settings: dict[str, Any]) -> str | None:
    key = (settings.get("metric", "val_acc"), settings.get("mode", "max"))
    if key in RANK_COLUMNS:
        return None
    return (f"The study metric {key[0]!r} ({key[1]}) has no column in trials.parquet; trials are "
            f"ranked by max validation accuracy instead (supported: {sorted(RANK_COLUMNS)}).")


def best_trial(
    trials: pd.DataFrame, settings: dict[str, Any], among: set[str] | None = None
) -> pd.Series | None:
    """Best trial by the study metric, optionally only among the trial ids in ``among``."""
    r = ranked(trials, settings)
    if among is not None:
        r = r[r["trial_id"].isin(among)]
    return None if r.empty else r.iloc[0]


def _present(value: Any) -> bool:
    # pd.NA: a trial without this value in a nullable (Int64, boolean, string) config column
    return value is not None and value is not pd.NA and not (
        isinstance(value, float | np.floating) and math.isnan(value))


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def hp_values(trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The searched (non-fixed) hyperparameters per trial, NaN where a trial has none.

    Values come from the raw suggestions in ``config/suggested`` (a JSON object, when the runner
    stores one: its names match study.json even where the space derives other config keys from
    them), else from ``config/<name>``. Conditional hyperparameters are NaN on other branches.
    """
    suggested = (trials["config/suggested"].map(_as_dict) if "config/suggested" in trials
                 else pd.Series([{}] * len(trials), index=trials.index, dtype=object))
    if hyperparameters:
        names = [n for n, spec in hyperparameters.items() if spec.get("role") != "fixed"]
    elif "config/suggested" in trials:
        names = list(dict.fromkeys(k for d in suggested for k in d))
    else:  # no study.json: whatever config columns vary (the per-trial seed always does)
        names = [c.removeprefix("config/") for c in trials.columns
                 if c.startswith("config/") and c != "config/seed"
                 and trials[c].astype(str).nunique() > 1]
    cols = {}
    for n in names:
        config = trials[f"config/{n}"] if f"config/{n}" in trials else [np.nan] * len(trials)
        values = [d[n] if n in d else c for d, c in zip(suggested, config, strict=True)]
        col = pd.Series([v if _present(v) else np.nan for v in values], index=trials.index)
        if col.notna().any():
            cols[n] = col.infer_objects()
    return pd.DataFrame(cols, index=trials.index)


def variants(trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]]) -> pd.Series:
    """'name=value, ...' of each trial's searched hyperparameters (the seed's variant column)."""
    values = hp_values(trials, hyperparameters)
    return pd.Series([
        ", ".join(f"{n}={format_value(v)}" for n, v in row.items() if _present(v))
        for _, row in values.iterrows()
    ], index=trials.index, dtype=object)


def format_value(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def leaderboard(
    trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]], settings: dict[str, Any]
) -> pd.DataFrame:
    """The seed's results columns per trial, best first, then trials without a metric."""
    rest = trials[~trials["trial_id"].isin(ranked(trials, settings)["trial_id"])]
    t = pd.concat([ranked(trials, settings), rest])
    variant = variants(t, hyperparameters)
    ci = [
        f"{lo:.3f}–{hi:.3f}" if pd.notna(lo) and pd.notna(hi) else ""
        for lo, hi in zip(t["test_acc_ci_low"], t["test_acc_ci_high"], strict=True)
    ]
    return pd.DataFrame({
        "trial": t["trial_id"].astype(str).to_numpy(),
        "status": t["status"].astype(str).to_numpy(),
        "model": t["model"].astype(str).to_numpy(),
        "data set": t["dataset"].astype(str).to_numpy(),
        "variant": np.asarray(variant, dtype=object),
        "epochs": t["epochs"].to_numpy(),
        "avg val acc": t["val_acc_avg"].round(4).to_numpy(),
        "max val acc": t["val_acc_max"].round(4).to_numpy(),
        "test acc": t["test_acc"].round(4).to_numpy(),
        "test acc 95% CI": ci,
        "params": t["params"].to_numpy(),
        "epoch time (s)": t["epoch_s_mean"].round(2).to_numpy(),
    })


def learning_curves(epochs: pd.DataFrame, trials: pd.DataFrame | None) -> pd.DataFrame:
    """Per trial-epoch val acc/loss with the trial's status ('unknown' without trials table)."""
    curves = epochs[["trial_id", "epoch", "val_acc", "val_loss"]].sort_values(["trial_id", "epoch"])
    if trials is None:
        return curves.assign(status="unknown")
    status = trials.set_index("trial_id")["status"].astype(str)
    return curves.assign(status=curves["trial_id"].map(status).fillna("unknown"))


def _plain(value: Any) -> Any:
    """A config value as Optuna/JSON wants it: Python scalars, lists as canonical JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value))
        except json.JSONDecodeError:
            return value
    return value


def param_importances(
    trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]], settings: dict[str, Any]
) -> tuple[dict[str, float] | None, str]:
    """Optuna (PED-ANOVA) importances of the searched hyperparameters for the study metric.

    Returns (importances, note); importances is None when they cannot be computed, and the
    note says why. Finished and ASHA-stopped trials count, each with its best accuracy.
    """
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    column, larger = rank_column(settings)
    done = trials[trials["status"].isin(DONE) & trials[column].notna()]
    vals = hp_values(done, hyperparameters)
    names = [n for n in vals.columns if n in hyperparameters]
    if len(done) < 2 or not names:
        why = "fewer than 2 finished trials" if len(done) < 2 else "no searched hyperparameters"
        return None, f"Hyperparameter importance needs more data: {why}."
    dists: dict[str, Any] = {}
    for n in names:
        spec, values = hyperparameters[n], vals[n]
        kind = spec.get("kind")
        if kind == "categorical":
            dists[n] = CategoricalDistribution([_plain(c) for c in spec.get("choices") or []])
        else:  # float or int (load.py checked the kinds)
            cls, cast = (FloatDistribution, float) if kind == "float" else (IntDistribution, int)
            low = cast(spec["low"] if spec.get("low") is not None else values.min())
            high = cast(spec["high"] if spec.get("high") is not None else values.max())
            dists[n] = cls(low, high, log=bool(spec.get("log", False)))
    frozen, skipped = [], 0
    for idx, value in done[column].items():
        # Conditional hyperparameters: each trial carries only the ones it was given.
        params = {n: _plain(vals.at[idx, n]) for n in names if _present(vals.at[idx, n])}
        try:
            frozen.append(optuna.trial.create_trial(
                value=float(value), params=params,
                distributions={n: dists[n] for n in params}))
        except ValueError:  # a value outside the declared space: leave that trial out
            skipped += 1
    # PED-ANOVA needs no extra package (fANOVA would need scikit-learn). Its docs advise >= 5
    # trials in the top quantile, so small studies look at a wider top (at most half).
    quantile = min(0.5, max(0.1, 5 / max(len(frozen), 1)))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" chatter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-API and small-sample warnings
            study = optuna.create_study(direction="maximize" if larger else "minimize")
            study.add_trials(frozen)
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(
                    target_quantile=quantile))
    except (ValueError, RuntimeError) as exc:
        return None, f"Hyperparameter importance could not be computed: {exc}"
    finally:
        optuna.logging.set_verbosity(verbosity)
    scores = list(imp.values())
    if len(frozen) < 2 or not scores or max(scores) - min(scores) < 1e-9:
        # PED-ANOVA gives every hyperparameter the same score when it cannot tell them apart
        return None, ("Hyperparameter importance is not informative yet: too few trials, or "
                      "trials too alike, to tell the hyperparameters apart.")
    note = (f"PED-ANOVA: how much each hyperparameter matters for reaching the top "
            f"{quantile:.0%} of {len(frozen)} finished or ASHA-stopped trials")
    if skipped:
        note += f" ({skipped} trial(s) with values outside the search space left out)"
    if len(frozen) < 10:
        note += "; with this few trials, treat it as a rough hint"
    return {k: float(v) for k, v in imp.items()}, note + "."


def at_edge(value: float, low: float, high: float, log: bool = False, margin: float = 0.1) -> bool:
    """Whether ``value`` lies in the outer ``margin`` of [low, high] (in log space if log)."""
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    if high <= low:
        return False
    pos = (value - low) / (high - low)
    return pos <= margin or pos >= 1 - margin


def axis_data(
    trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]], settings: dict[str, Any]
) -> list[dict[str, Any]]:
    """One entry per searched hyperparameter: values vs metric, best value and edge flag."""
    column, _ = rank_column(settings)
    r = ranked(trials, settings)
    vals = hp_values(trials, hyperparameters).loc[r.index]
    out = []
    for n in vals.columns:
        spec, values = hyperparameters.get(n, {}), vals[n]
        numeric = spec.get("kind") in ("float", "int") or (
            not spec and pd.api.types.is_numeric_dtype(values)
            and not pd.api.types.is_bool_dtype(values))
        entry: dict[str, Any] = {
            "name": n, "numeric": numeric, "log": bool(spec.get("log", False)),
            # None where a conditional hyperparameter is absent from a trial
            "x": [(float(v) if numeric else format_value(_plain(v))) if _present(v) else None
                  for v in values],
            "y": r[column].tolist(), "status": r["status"].astype(str).tolist(),
            "trial_id": r["trial_id"].astype(str).tolist(),
            "complete": bool(values.notna().all()),
            "low": spec.get("low"), "high": spec.get("high"), "best": None, "at_edge": False,
        }
        if len(r) and entry["x"][0] is not None:
            entry["best"] = entry["x"][0]
            if numeric:
                num = pd.to_numeric(values)
                low = spec["low"] if spec.get("low") is not None else float(num.min())
                high = spec["high"] if spec.get("high") is not None else float(num.max())
                entry.update(low=low, high=high)
                entry["at_edge"] = at_edge(entry["best"], low, high, entry["log"])
        out.append(entry)
    return out


def pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Mask of points not dominated by another with cost <= and acc >= (one strictly)."""
    c, a = np.asarray(cost, dtype=float), np.asarray(acc, dtype=float)
    no_worse = (c[None, :] <= c[:, None]) & (a[None, :] >= a[:, None])
    better = (c[None, :] < c[:, None]) | (a[None, :] > a[:, None])
    return ~(no_worse & better).any(axis=1)


def cost_data(trials: pd.DataFrame, settings: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Per cost column (params, epoch time): accuracy, cost and Pareto-front membership."""
    column, _ = rank_column(settings)
    r = ranked(trials, settings)
    out = {}
    for cost in ("params", "epoch_s_mean"):
        d = r[r[cost].notna() & (r[cost] > 0)]  # 0 = not reported (would dominate all)
        d = pd.DataFrame({
            "trial_id": d["trial_id"].astype(str), "cost": d[cost].astype(float),
            "acc": d[column].astype(float), "status": d["status"].astype(str),
        }).sort_values("cost")
        out[cost] = d.assign(on_front=pareto_front(d["cost"].to_numpy(), d["acc"].to_numpy()))
    return out


def compare_rows(studies: list[StudyData]) -> pd.DataFrame:
    """The seed's results table across studies: best trial per study × model × data set."""
    rows = []
    for s in studies:
        if s.trials is None or s.trials.empty:
            continue
        for (model, dataset), group in s.trials.groupby(["model", "dataset"], sort=True):
            best = best_trial(group, s.settings)
            if best is None:
                continue
            test = test_accuracy(best, s.predictions, s.classes) or {}
            rows.append({
                "study": s.name, "space": str(s.meta.get("space", "")),
                "model": str(model), "data set": str(dataset),
                "variant": variants(best.to_frame().T, s.hyperparameters).iloc[0],
                "trial": str(best["trial_id"]),
                "avg val acc": float(best["val_acc_avg"]),
                "max val acc": float(best["val_acc_max"]),
                "test acc": test.get("acc", np.nan),
                "ci low": test.get("low", np.nan), "ci high": test.get("high", np.nan),
            })
    return pd.DataFrame(rows, columns=[
        "study", "space", "model", "data set", "variant", "trial", "avg val acc",
        "max val acc", "test acc", "ci low", "ci high",
    ])
