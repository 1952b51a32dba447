"""Plain data about the searched hyperparameters: values per trial, axes against the metric with
their order and range edges, and importances with their spread (pandas/numpy/optuna, no Plotly).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from study.report.categories import category_order, decode, label, missing, two_valued
from study.report.trials import DONE, hp_values
from study.results.statistics import rank_column, ranked

# Config keys the runner adds to every trial (see study.run.driver.resolve): not searched, not
# settings a reader chose, so the summary lists them apart.
INTERNAL = ("metric", "mode", "num_threads", "seed", "suggested")


def axis_kind(spec: dict[str, Any], values: pd.Series) -> str:
    """'float', 'int' or 'category': how a hyperparameter's axis is drawn. Two-valued ints
    (0/1 switches) and booleans are categories: two ticks, not a continuous 0-1 axis."""
    kind = spec.get("kind")
    if kind == "int" and two_valued(spec):
        return "category"
    if kind in ("float", "int"):
        return str(kind)
    if kind == "categorical" or not len(values.dropna()):
        return "category"
    present = values.dropna()  # no study.json: judge by the values themselves
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        return "category"
    return "int" if pd.api.types.is_integer_dtype(present) else "float"


def edge(
    value: float, low: float, high: float, log: bool = False, margin: float = 0.1
) -> str | None:
    """'low' or 'high' when ``value`` lies in the outer ``margin`` of [low, high] (in log space
    if log) on a side the range could be widened to. A linear range starting at 0 or below
    cannot go lower (a count, a rate or a probability), so its low edge is never flagged."""
    if high <= low:
        return None
    if log:
        value, low_, high_ = math.log(value), math.log(low), math.log(high)
    else:
        low_, high_ = low, high
    pos = (value - low_) / (high_ - low_)
    if pos <= margin and (log or low > 0):
        return "low"
    return "high" if pos >= 1 - margin else None


def axis_data(
    trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]], settings: dict[str, Any]
) -> list[dict[str, Any]]:
    """One entry per searched hyperparameter: values vs metric (best first), the axis kind,
    the category order or integer ticks, the best value and which edge of its range it is at."""
    column, _ = rank_column(settings)
    r = ranked(trials, settings)
    vals = hp_values(trials, hyperparameters).loc[r.index]
    out = []
    for n in vals.columns:
        spec, values = hyperparameters.get(n, {}), vals[n]
        kind = axis_kind(spec, values)
        numeric = kind != "category"
        cats = [] if numeric else category_order(values, spec.get("choices"))
        entry: dict[str, Any] = {
            "name": n,
            "kind": kind,
            "numeric": numeric,
            "log": bool(spec.get("log", False)),
            # None where a conditional hyperparameter is absent from a trial
            "x": [None if missing(v) else (float(v) if numeric else label(v)) for v in values],
            "categories": [label(c) for c in cats],
            "ticks": None,
            "y": r[column].tolist(),
            "status": r["status"].astype(str).tolist(),
            "trial_id": r["trial_id"].astype(str).tolist(),
            "complete": bool(values.notna().all()),
            "low": spec.get("low"),
            "high": spec.get("high"),
            "best": None,
            "edge": None,
        }
        if numeric and len(values.dropna()):
            num = pd.to_numeric(values)
            low = spec["low"] if spec.get("low") is not None else float(num.min())
            high = spec["high"] if spec.get("high") is not None else float(num.max())
            entry.update(low=low, high=high)
            if kind == "int" and high - low <= 12:  # integer ticks, never 0.5
                entry["ticks"] = list(range(int(low), int(high) + 1))
        if len(r) and entry["x"][0] is not None:
            entry["best"] = entry["x"][0]
            if numeric:
                entry["edge"] = edge(entry["best"], entry["low"], entry["high"], entry["log"])
        entry["at_edge"] = entry["edge"] is not None
        out.append(entry)
    return out


def _plain(value: Any) -> Any:
    """A config value as Optuna/JSON wants it: Python scalars, lists as canonical JSON."""
    return decode(value)


def _frozen_trials(
    trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]], settings: dict[str, Any]
) -> tuple[list[Any], int, list[str]]:
    """Optuna FrozenTrials of the finished and stopped trials (each with its best metric), the
    number left out for values outside the declared space, and the hyperparameter names."""
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    column, _ = rank_column(settings)
    done = trials[trials["status"].isin(DONE) & trials[column].notna()]
    vals = hp_values(done, hyperparameters)
    names = [n for n in vals.columns if n in hyperparameters]
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
        params = {n: _plain(vals.at[idx, n]) for n in names if not missing(vals.at[idx, n])}
        try:
            frozen.append(
                optuna.trial.create_trial(
                    value=float(value), params=params, distributions={n: dists[n] for n in params}
                )
            )
        except ValueError:  # a value outside the declared space: leave that trial out
            skipped += 1
    return frozen, skipped, names


def _ped_anova(frozen: list[Any], larger: bool, quantile: float) -> dict[str, float]:
    import optuna

    study = optuna.create_study(direction="maximize" if larger else "minimize")
    study.add_trials(frozen)
    imp = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
    )
    return {k: float(v) for k, v in imp.items()}


def param_importances(
    trials: pd.DataFrame,
    hyperparameters: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    resamples: int = 20,
    seed: int = 0,
) -> tuple[dict[str, float] | None, str, pd.DataFrame | None]:
    """Optuna (PED-ANOVA) importances of the searched hyperparameters for the study metric.

    Returns (importances, note, spread); importances is None when they cannot be computed, and
    the note says why. Finished and ASHA-stopped trials count, each with its best accuracy.
    ``spread`` has one row per bootstrap resample of those trials (seeded), one column per
    hyperparameter: how much the ranking would move with other trials of the same study.
    """
    import optuna

    _, larger = rank_column(settings)
    frozen, skipped, names = _frozen_trials(trials, hyperparameters, settings)
    if len(frozen) + skipped < 2 or not names:
        why = (
            "fewer than 2 finished trials"
            if len(frozen) + skipped < 2
            else "no searched hyperparameters"
        )
        return None, f"Hyperparameter importance needs more data: {why}.", None
    # PED-ANOVA needs no extra package (fANOVA would need scikit-learn). Its docs advise >= 5
    # trials in the top quantile, so small studies look at a wider top (at most half).
    quantile = min(0.5, max(0.1, 5 / max(len(frozen), 1)))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" chatter
    rng = np.random.default_rng(seed)
    spread = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-API and small-sample warnings
            imp = _ped_anova(frozen, larger, quantile)
            for _ in range(resamples if len(frozen) >= 3 else 0):
                pick = rng.integers(0, len(frozen), len(frozen))
                # Optuna wants distinct trial numbers; copies of one trial are fine otherwise
                sample = [
                    optuna.trial.create_trial(
                        value=frozen[i].value,
                        params=frozen[i].params,
                        distributions=frozen[i].distributions,
                    )
                    for i in pick
                ]
                try:
                    spread.append(_ped_anova(sample, larger, quantile))
                except (ValueError, RuntimeError):
                    continue  # e.g. a resample where every trial is alike
    except (ValueError, RuntimeError) as exc:
        return None, f"Hyperparameter importance could not be computed: {exc}", None
    finally:
        optuna.logging.set_verbosity(verbosity)
    scores = list(imp.values())
    if len(frozen) < 2 or not scores or max(scores) - min(scores) < 1e-9:
        # PED-ANOVA gives every hyperparameter the same score when it cannot tell them apart
        return (
            None,
            (
                "Hyperparameter importance is not informative yet: too few trials, or "
                "trials too alike, to tell the hyperparameters apart."
            ),
            None,
        )
    n_fin = int((trials["status"] == "finished").sum())
    note = (
        f"PED-ANOVA: how much each hyperparameter matters for reaching the top "
        f"{quantile:.0%} of {len(frozen)} trials ({n_fin} finished and the ASHA-stopped ones, "
        f"each with its best validation score). optuna-dashboard computes importance from "
        f"COMPLETE trials only (ASHA-stopped trials are PRUNED in optuna.db), so its "
        f"numbers differ"
    )
    if skipped:
        note += f" ({skipped} trial(s) with values outside the search space left out)"
    if len(frozen) < 10:
        note += (
            f". Only {len(frozen)} trials: treat this as a rough hint, not a ranking; the "
            "whiskers show how much it moves over bootstrap resamples of the trials"
        )
    frame = pd.DataFrame(spread, columns=list(imp)).fillna(0.0) if spread else None
    return imp, note + ".", frame
