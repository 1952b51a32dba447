"""`confirm.parquet`: its layout and what it says (pandas only: the report reads this, no Ray).

One row per model trained or scored after tuning (`study.evaluation.confirm`):
  tuning    a top trial's own best checkpoint (its validation score is the max over epochs and
            trials that picked it, so it is biased upwards; listed for comparison)
  seed      the trial's config retrained with a new seed to its chosen epoch (train -> val)
  fold      the config trained on k-1 folds of train+val, scored on the held-out fold
  refit     the winner trained on train+val (no validation score): the study's final model
  ensemble  the top trials' probabilities averaged
`val_acc` is on the validation split (the held-out fold for `fold` rows); `*_tta` columns are the
same models with test-time augmentation (NaN without `--tta`). The test split is only scored.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

KINDS = ("tuning", "seed", "fold", "refit", "ensemble")


COLUMNS = {
    "kind": "string",
    "trial_id": "string",
    "model": "string",
    "seed": "int64",
    "fold": "int64",  # -1 outside cross-validation
    "epochs": "int64",
    "n_train": "int64",
    "n_val": "int64",
    "val_acc": "float64",
    "val_macro_f1": "float64",
    "test_acc": "float64",
    "test_macro_f1": "float64",
    "test_acc_ci_low": "float64",
    "test_acc_ci_high": "float64",
    "val_acc_tta": "float64",
    "test_acc_tta": "float64",
    "wall_s": "float64",
    "error": "string",
}


REPEATS = ("fold", "seed")  # the kinds whose mean confirms a trial, preferred first


def table(rows: list[dict]) -> pd.DataFrame:
    """Rows as the typed table (missing values NaN / -1 / '')."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col, dtype in COLUMNS.items():
        if dtype == "int64":
            df[col] = df[col].fillna(-1)
        elif dtype == "string":
            df[col] = df[col].astype("string").fillna("")
    return df.astype(COLUMNS)


def t_interval(
    values: np.ndarray, level: float = 0.95, lo: float = 0.0, hi: float = 1.0
) -> tuple[float, float]:
    """Student-t interval of the mean of `values` (NaN for fewer than 2), clipped to the range
    an accuracy can take: with 2 runs it is 12.7 standard errors wide, what 2 runs can say."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan, math.nan
    sem = v.std(ddof=1) / math.sqrt(len(v))
    if sem == 0:
        return float(v.mean()), float(v.mean())
    # scipy.stats costs about as much to import as pandas, for a table only --confirm writes
    from scipy import stats

    low, high = stats.t.interval(level, len(v) - 1, loc=v.mean(), scale=sem)
    return max(float(low), lo), min(float(high), hi)


def _mean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


def _sd(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1)) if len(v) > 1 else math.nan


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per trial and kind of repeat (seed, fold): runs, mean ± sd and 95 % t-interval of the
    validation and test accuracy, next to the tuning run's own numbers; ranked by the confirmed
    validation mean (folds where a trial has them, else seeds), best first."""
    rep = df[df["kind"].isin(REPEATS)]
    tuning = df[df["kind"] == "tuning"].set_index("trial_id")
    rows = []
    for (tid, kind), g in rep.groupby(["trial_id", "kind"], sort=False):
        val, test = g["val_acc"].to_numpy(float), g["test_acc"].to_numpy(float)
        ok = np.isfinite(val)
        vlo, vhi = t_interval(val)
        tlo, thi = t_interval(test)
        rows.append(
            {
                "trial_id": tid,
                "model": g["model"].iloc[0],
                "kind": kind,
                "runs": int(ok.sum()),
                "failed": int((~ok).sum()),
                "epochs": int(g["epochs"].iloc[0]),
                "val_mean": _mean(val),
                "val_sd": _sd(val),
                "val_ci_low": vlo,
                "val_ci_high": vhi,
                "test_mean": float(np.nanmean(test)) if np.isfinite(test).any() else math.nan,
                "test_sd": float(np.nanstd(test, ddof=1))
                if np.isfinite(test).sum() > 1
                else math.nan,
                "test_ci_low": tlo,
                "test_ci_high": thi,
                "tuning_val": float(tuning["val_acc"].get(tid, math.nan)),
                "tuning_test": float(tuning["test_acc"].get(tid, math.nan)),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_pref"] = out["kind"].map({k: i for i, k in enumerate(REPEATS)})
    out = out.sort_values(["_pref", "val_mean"], ascending=[True, False], kind="stable")
    return out.drop(columns="_pref").reset_index(drop=True)


def ranking(df: pd.DataFrame) -> list[str]:
    """Trial ids by confirmed validation mean (one kind of repeat per trial: folds if any)."""
    s = summary(df)
    if s.empty:
        return []
    s = s.drop_duplicates("trial_id", keep="first")  # summary lists folds first
    return s.sort_values("val_mean", ascending=False, kind="stable")["trial_id"].tolist()


def mean_sd(mean: float, sd: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if math.isfinite(sd) else f"{mean:.{digits}f}"


def display(df: pd.DataFrame) -> pd.DataFrame:
    """The summary as strings a person reads (CLI and report): mean ± sd [95 % CI]."""
    s = summary(df)
    if s.empty:
        return s

    def ci(lo: float, hi: float) -> str:
        return f"[{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else ""

    def pairs(a: str, b: str) -> zip:
        return zip(s[a], s[b], strict=True)

    return pd.DataFrame(
        {
            "trial": s["trial_id"],
            "model": s["model"],
            "repeats": [
                f"{n} {k}s" + (f" ({f} failed)" if f else "")
                for n, k, f in zip(s["runs"], s["kind"], s["failed"], strict=True)
            ],
            "epochs": s["epochs"],
            "val acc (confirmed)": [mean_sd(m, d) for m, d in pairs("val_mean", "val_sd")],
            "val 95% CI": [ci(lo, hi) for lo, hi in pairs("val_ci_low", "val_ci_high")],
            "test acc": [mean_sd(m, d) for m, d in pairs("test_mean", "test_sd")],
            "test 95% CI": [ci(lo, hi) for lo, hi in pairs("test_ci_low", "test_ci_high")],
            "tuning val (max)": s["tuning_val"].round(3),
            "tuning test": s["tuning_test"].round(3),
        }
    )


def finals(df: pd.DataFrame) -> pd.DataFrame:
    """The refit and ensemble rows next to the single best tuning model, for the printout."""
    keep = df[df["kind"].isin(["tuning", "refit", "ensemble"])]
    cols = [
        "kind",
        "trial_id",
        "model",
        "epochs",
        "n_train",
        "val_acc",
        "test_acc",
        "test_acc_ci_low",
        "test_acc_ci_high",
        "val_acc_tta",
        "test_acc_tta",
    ]
    return keep[cols].dropna(axis=1, how="all").reset_index(drop=True)
