"""`confirm.parquet`: its layout and what it says (pandas only: the report reads this, no Ray).

One row per model trained or scored after tuning (`study.evaluation.confirm`,
`study.evaluation.probe`); the kinds and columns are declared in `study.results.schema`
(`CONFIRM_KINDS`, `TABLES[CONFIRM]`). `val_acc` is on the validation split (the held-out fold for
`fold` rows); `*_tta` columns are the same models with test-time augmentation (NaN without
`--tta`). The test split is only scored. This module is the file's one writer (`write`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study import storage
from study.results.schema import CONFIRM, CONFIRM_KINDS, TABLES
from study.results.statistics import ranked
from study.results.tables import read_table, write_parquet

KINDS = tuple(CONFIRM_KINDS)
PROBE = "probe"
_DTYPES = {"string": "string", "int64": "int64", "double": "float64"}
COLUMNS = {c.name: _DTYPES[c.type] for c in TABLES[CONFIRM].columns if c.name != "study"}


def table(rows: list[dict]) -> pd.DataFrame:
    """Rows as the typed table (missing values NaN / -1 / '')."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col, dtype in COLUMNS.items():
        if dtype == "int64":
            df[col] = df[col].fillna(-1)
        elif dtype == "string":
            df[col] = df[col].astype("string").fillna("")
    return df.astype(COLUMNS)


def write(study_dir: str, rows: list[dict], kinds: tuple[str, ...]) -> pd.DataFrame:
    """confirm.parquet with every row of `kinds` replaced by `rows`, the other kinds' rows as they
    were: the confirmation rewrites its kinds (`RETRAINED`), the probe its own. Returns the
    table written."""
    old = read_table(study_dir, CONFIRM)
    kept = [] if old is None else old[~old["kind"].isin(kinds)].to_dict("records")
    df = table(kept + list(rows))
    write_parquet(df, storage.join(study_dir, CONFIRM))
    return df


RETRAINED = tuple(k for k in KINDS if k != PROBE)  # what study.evaluation.confirm writes


REPEATS = ("fold", "seed")  # the kinds whose mean confirms a trial, preferred first


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


# ----------------------------------------------------------------------------- the probe


def probes(df: pd.DataFrame | None) -> pd.DataFrame:
    """The probe rows that scored, best validation accuracy first (the bar: chosen on val)."""
    if df is None or "kind" not in df or "val_acc" not in df:
        return pd.DataFrame(columns=list(COLUMNS))
    p = df[(df["kind"] == PROBE) & (df["error"].fillna("") == "")]
    p = p[np.isfinite(p["test_acc"].astype(float))]
    return p.sort_values("val_acc", ascending=False, kind="stable").reset_index(drop=True)


def _ci(lo: float, hi: float) -> str:
    return f"{lo:.3f}–{hi:.3f}"


def probe_summary(
    df: pd.DataFrame | None, trials: pd.DataFrame | None, rank: dict[str, str]
) -> tuple[list[str], str]:
    """What the console, the Leaderboard and the Architectures section say about the linear
    probe: one line per backbone probed (failed ones with their error), and the verdict: whether
    the best tuned trial (best by validation among those scored on test) beats the bar, the
    probe with the best validation accuracy, beyond the noise ('' when no probe scored).
    ([], '') when the study has no probe rows.

    "Beyond the noise" is decided by the two exact (Clopper–Pearson) 95 % test intervals not
    overlapping: a conservative rule (non-overlap of two 95 % intervals is stricter than a 5 %
    test of their difference), so "within the noise" means not shown, not shown equal."""
    if df is None or "kind" not in df:
        return [], ""
    rows = df[df["kind"] == PROBE]
    if rows.empty:
        return [], ""
    lines = []
    for r in rows.itertuples():
        if r.error:
            lines.append(f"linear probe on frozen {r.model} features failed: {r.error}")
        else:
            lines.append(
                f"linear probe on frozen {r.model} features (logistic regression, C={r.probe_c:g} "
                f"chosen on val): val acc {r.val_acc:.3f}, test acc {r.test_acc:.3f} (exact 95 % "
                f"CI {_ci(r.test_acc_ci_low, r.test_acc_ci_high)}, {r.n_train} train images)"
            )
    bar = probes(df)
    if bar.empty:
        return lines, ""
    b = bar.iloc[0]
    tested = None if trials is None else ranked(trials[trials["test_acc"].notna()], rank)
    if tested is None or tested.empty:
        return lines, "no tuned trial was scored on the test split: nothing to hold to the bar"
    t = tested.iloc[0]
    t_ci, b_ci = (
        (t["test_acc_ci_low"], t["test_acc_ci_high"]),
        (b.test_acc_ci_low, b.test_acc_ci_high),
    )
    if t_ci[0] > b_ci[1]:
        verdict = "beats it beyond the noise"
    elif t_ci[1] < b_ci[0]:
        verdict = "falls short of it beyond the noise"
    else:
        verdict = "is within the noise of it (tuning has not shown that it beats a linear probe)"
    overlap = "overlap" if verdict.startswith("is within") else "do not overlap"
    return lines, (
        f"the {b.model} probe (best on val) scores {b.test_acc:.3f} ({_ci(*b_ci)}) on test; the "
        f"best tuned trial {t['trial_id']} scores {t['test_acc']:.3f} ({_ci(*t_ci)}) and "
        f"{verdict}: their exact 95 % test intervals {overlap}"
    )
