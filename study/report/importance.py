"""How much each searched hyperparameter matters: Optuna's PED-ANOVA importances for the study
metric, with their spread over bootstrap resamples of the trials (pandas/numpy/optuna, no
Plotly), and their bar chart (the Hyperparameters section's "Importance").
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from study.report.categories import decode, missing
from study.report.style import TEMPLATE, txt
from study.report.trials import DONE, hp_values
from study.results.statistics import rank_column


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


def importance_figure(importances: dict[str, float], spread: pd.DataFrame | None) -> go.Figure:
    """Importance on all trials; whiskers: 10th-90th percentile over bootstrap resamples."""
    names = list(importances)[::-1]  # most important on top
    error: dict[str, Any] = {}
    if spread is not None and len(spread):
        lo = [float(spread[n].quantile(0.1)) if n in spread else importances[n] for n in names]
        hi = [float(spread[n].quantile(0.9)) if n in spread else importances[n] for n in names]
        error = {
            "error_x": {
                "type": "data",
                "symmetric": False,
                "array": [max(h - importances[n], 0) for h, n in zip(hi, names, strict=True)],
                "arrayminus": [max(importances[n] - v, 0) for v, n in zip(lo, names, strict=True)],
                "color": "#555",
            }
        }
    fig = go.Figure(
        go.Bar(
            x=[importances[n] for n in names],
            y=[txt(n) for n in names],
            orientation="h",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
            marker_color="#1f77b4",
            **error,
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        height=120 + 40 * len(names),
        xaxis_title="importance (PED-ANOVA, normalised; whiskers: 10th–90th "
        "percentile over bootstrap resamples of the trials)",
        margin={"t": 30},
    )
    return fig
