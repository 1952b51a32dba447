"""What several sections read of each trial: which trials have final results, the searched
hyperparameter values per trial (and as one 'name=value, ...' text), and the best trial by the
study metric (pandas/numpy, no Plotly).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from study.report.categories import decode, label, missing
from study.results.statistics import ranked

# Trials whose reported accuracies are final (stopped = ended early by ASHA at a rung).
DONE = ("finished", "stopped")


def hp_values(trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The searched (non-fixed) hyperparameters per trial, NaN where a trial has none.

    Values come from the raw suggestions in ``config/suggested`` (a JSON object, when the runner
    stores one: its names match study.json even where the space derives other config keys from
    them), else from ``config/<name>``, decoded where stored as JSON text. Conditional
    hyperparameters are NaN on other branches.
    """
    suggested = (
        trials["config/suggested"].map(_as_dict)
        if "config/suggested" in trials
        else pd.Series([{}] * len(trials), index=trials.index, dtype=object)
    )
    if hyperparameters:
        names = [n for n, spec in hyperparameters.items() if spec.get("role") != "fixed"]
    elif "config/suggested" in trials:
        names = list(dict.fromkeys(k for d in suggested for k in d))
    else:  # no study.json: whatever config columns vary (the per-trial seed always does)
        names = [
            c.removeprefix("config/")
            for c in trials.columns
            if c.startswith("config/")
            and c != "config/seed"
            and trials[c].astype(str).nunique() > 1
        ]
    cols = {}
    for n in names:
        config = trials[f"config/{n}"] if f"config/{n}" in trials else [None] * len(trials)
        values = [decode(d[n] if n in d else c) for d, c in zip(suggested, config, strict=True)]
        col = pd.Series(
            [np.nan if v is None else v for v in values], index=trials.index, dtype=object
        )
        if col.notna().any():
            cols[n] = col.infer_objects()
    return pd.DataFrame(cols, index=trials.index)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def variants(trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]]) -> pd.Series:
    """'name=value, ...' of each trial's searched hyperparameters (the seed's variant column)."""
    values = hp_values(trials, hyperparameters)
    return pd.Series(
        [
            ", ".join(f"{n}={label(v)}" for n, v in row.items() if not missing(v))
            for _, row in values.iterrows()
        ],
        index=trials.index,
        dtype=object,
    )


def best_trial(
    trials: pd.DataFrame, settings: dict[str, Any], among: set[str] | None = None
) -> pd.Series | None:
    """Best trial by the study metric, optionally only among the trial ids in ``among``."""
    r = ranked(trials, settings)
    if among is not None:
        r = r[r["trial_id"].isin(among)]
    return None if r.empty else r.iloc[0]
