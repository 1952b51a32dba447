"""Plain data about the trials, computed from the study's tables (pandas/numpy/optuna, no Plotly).

Each function here feeds one figure or table in ``figures.py``/``page.py``; keeping them free of
drawing code lets the tests check numbers by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from study.report.categories import decode, label, missing
from study.report.evaluated import test_accuracy
from study.report.history import optuna_numbers
from study.report.load import StudyData
from study.report.trials import best_trial, hp_values, variants
from study.results.statistics import RANK_COLUMNS, Baseline, best_at_chance, ranked

# Config keys the runner adds to every trial (see study.run.driver.resolve): not searched, not
# settings a reader chose, so the summary lists them apart.
INTERNAL = ("metric", "mode", "num_threads", "seed", "suggested")
STATUSES = ("finished", "stopped", "errored", "diverged", "running")


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


def rank_note(settings: dict[str, Any]) -> str | None:
    key = (settings.get("metric", "val_acc"), settings.get("mode", "max"))
    if key in RANK_COLUMNS:
        return None
    return (
        f"The study metric {key[0]!r} ({key[1]}) has no column in trials.parquet; trials are "
        f"ranked by max validation accuracy instead (supported: {sorted(RANK_COLUMNS)})."
    )


ACCURACY_COLUMNS = ("avg val acc", "max val acc", "test acc")


def leaderboard(
    trials: pd.DataFrame,
    hyperparameters: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    gflops: pd.Series | None = None,
    study_seed: Any = None,
    baseline: Baseline | None = None,
) -> pd.DataFrame:
    """The seed's results per trial, best first (rank 1..), then trials without a metric.

    One column per searched hyperparameter (blank where a conditional one is not set), the
    Optuna trial number beside Ray's trial id where the seeds give it; the data-set column only
    when the trials use more than one (else the summary names it); with a `baseline`, a
    "learned" column that says "at chance after N epoch(s)" of each trial that never beat
    guessing (study.results.statistics), so a starting point that cannot learn is visible as
    such."""
    ranked_ = ranked(trials, settings)
    rest = trials[~trials["trial_id"].isin(ranked_["trial_id"])]
    t = pd.concat([ranked_, rest])
    ci = [
        f"{lo:.3f}–{hi:.3f}" if pd.notna(lo) and pd.notna(hi) else ""
        for lo, hi in zip(t["test_acc_ci_low"], t["test_acc_ci_high"], strict=True)
    ]
    cols: dict[str, Any] = {
        "rank": [str(i) for i in range(1, len(ranked_) + 1)] + [""] * len(rest),
        "trial": t["trial_id"].astype(str).to_numpy(),
    }
    numbers = optuna_numbers(t, study_seed)
    if numbers is not None:
        cols["optuna #"] = numbers.to_numpy()
    cols |= {
        "status": t["status"].astype(str).to_numpy(),
        "model": t["model"].astype(str).to_numpy(),
    }
    if t["dataset"].astype(str).nunique() > 1:
        cols["data set"] = t["dataset"].astype(str).to_numpy()
    values = hp_values(t, hyperparameters)
    for name in values.columns:
        if name != "model":  # already the model column
            cols[name] = [label(v) for v in values[name]]
    cols |= {
        "epochs": t["epochs"].to_numpy(),
        "avg val acc": t["val_acc_avg"].astype(float).to_numpy(),
        "max val acc": t["val_acc_max"].astype(float).to_numpy(),
    }
    if baseline is not None:
        cols["learned"] = chance_labels(t, baseline).to_numpy()
    cols |= {
        "test acc": t["test_acc"].astype(float).to_numpy(),
        "test acc 95% CI": ci,
        "params": t["params"].to_numpy(),
    }
    if gflops is not None and gflops.notna().any():
        cols["GFLOPs"] = gflops.reindex(t.index).to_numpy()
    cols["epoch time (s)"] = t["epoch_s_mean"].astype(float).to_numpy()
    return pd.DataFrame(cols)


def baseline(meta: dict[str, Any]) -> Baseline | None:
    """What guessing scores on the study's val split, from study.json's data set: its largest
    class's share where the class counts are recorded, else 1 / classes; None without counts."""
    ds = meta.get("dataset") or {}
    n_val = (ds.get("counts") or {}).get("val")
    if not ds.get("classes") or not isinstance(n_val, int) or isinstance(n_val, bool) or n_val < 1:
        return None
    if ds.get("class_counts"):
        return Baseline.from_manifest(ds)
    return Baseline(len(ds["classes"]), n_val)


def chance_labels(trials: pd.DataFrame, base: Baseline) -> pd.Series:
    """'at chance after N epoch(s)' per trial whose best val accuracy over its N epochs does not
    beat guessing (the console's verdict, study.results.statistics); '' for the rest and for trials
    that
    have not validated yet."""
    return pd.Series(
        [
            f"at chance after {int(e)} epoch(s)"
            if pd.notna(e) and int(e) >= 1 and best_at_chance(float(b), int(e), base)
            else ""
            for b, e in zip(trials["val_acc_max"], trials["epochs"], strict=True)
        ],
        index=trials.index,
        dtype=object,
    )


def config_split(
    trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]]
) -> dict[str, dict[str, str]]:
    """The config columns in three groups for the summary: 'searched' (the search space, as
    study.json declares it), 'fixed' (the same in every trial) and 'internal' (keys the runner
    adds: metric, mode, threads, per-trial seed). Config keys that vary but are not declared
    (derived from searched ones, e.g. lr from lr_adam) are left to the leaderboard."""
    searched = {}
    for name, spec in hyperparameters.items():
        if spec.get("role") == "fixed":
            continue
        if spec.get("kind") == "categorical":
            searched[name] = ", ".join(label(c) for c in spec.get("choices") or [])
        else:
            searched[name] = f"{label(spec.get('low'))} … {label(spec.get('high'))}" + (
                " (log)" if spec.get("log") else ""
            )
    fixed, internal = {}, {}
    for col in sorted(c for c in trials.columns if str(c).startswith("config/")):
        name = col.removeprefix("config/")
        if name in searched or name == "suggested":  # the searched values again, as JSON
            continue
        values = {label(v) for v in trials[col] if not missing(decode(v))}
        if name in INTERNAL:
            internal[name] = "per trial" if len(values) > 1 else next(iter(values), "")
        elif len(values) == 1:
            fixed[name] = next(iter(values))
    return {"searched": searched, "fixed": fixed, "internal": internal}


def is_smoke(meta: dict[str, Any]) -> bool:
    """Whether the study ran with --smoke-test (2 trials x 2 epochs at a tiny size)."""
    return bool((meta.get("settings") or {}).get("smoke_test"))


def smoke_note(meta: dict[str, Any]) -> str | None:
    """What --smoke-test changed, for the summary (the description is the full study's)."""
    if not is_smoke(meta):
        return None
    s = meta.get("settings") or {}
    shown = ", ".join(
        f"{k} {s[k]}" for k in ("num_samples", "max_epochs", "image_size") if s.get(k) is not None
    )
    return (
        f"SMOKE TEST: a quick check that the study runs, not a result ({shown}; the space's "
        f"smoke overrides also shrink the models, see the fixed settings). The description "
        f"above is the full study's."
    )


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
            rows.append(
                {
                    "study": s.name + (" (smoke test)" if is_smoke(s.meta) else ""),
                    "space": str(s.meta.get("space", "")),
                    "model": str(model),
                    "data set": str(dataset),
                    "variant": variants(best.to_frame().T, s.hyperparameters).iloc[0],
                    "trial": str(best["trial_id"]),
                    "avg val acc": float(best["val_acc_avg"]),
                    "max val acc": float(best["val_acc_max"]),
                    "test acc": test.get("acc", np.nan),
                    "ci low": test.get("low", np.nan),
                    "ci high": test.get("high", np.nan),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "study",
            "space",
            "model",
            "data set",
            "variant",
            "trial",
            "avg val acc",
            "max val acc",
            "test acc",
            "ci low",
            "ci high",
        ],
    )
