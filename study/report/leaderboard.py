"""The Leaderboard section: every trial's results in one sortable table, best first, with its
searched values, its test accuracy where evaluated, its costs, and "at chance" where it never beat
guessing. The plain data (pandas) and the HTML.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from study.report.categories import label
from study.report.history import optuna_numbers
from study.report.load import StudyData
from study.report.markup import esc, table
from study.report.trials import hp_values
from study.results import confirmed
from study.results.statistics import Baseline, best_at_chance, ranked


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


def probe_bar(d: StudyData) -> str:
    """The linear probe, the bar tuning must beat, and whether the best tuned trial beats it
    beyond the noise (`study.results.confirmed.probe_lines`); '' for a study without a probe."""
    lines, verdict = confirmed.probe_summary(d.confirm, d.trials, d.settings)
    if not lines:
        return ""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    bar = f'<p class="verdict"><b>The bar:</b> {esc(verdict)}</p>' if verdict else ""
    return f"{bar}<p>Linear probe (frozen pretrained features, test split):</p><ul>{items}</ul>"


def leaderboard_section(d: StudyData, gflops: pd.Series) -> str:
    """The linear probe's bar (if the study has one), then every trial's results as a sortable
    table, best first."""
    board = leaderboard(
        d.trials,
        d.hyperparameters,
        d.settings,
        gflops,
        d.meta.get("seed"),
        baseline(d.meta),
    )
    return (
        probe_bar(d) + "<p>Click a column header to sort. Blank hyperparameter cells: not set in "
        "that trial (a conditional hyperparameter).</p>" + table(board)
    )
