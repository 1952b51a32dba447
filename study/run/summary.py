"""What a finished study prints: the four numbers and trials at chance, the leaderboard of the
test split, the linear probe (the bar tuning must beat) and the confirmed table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from study import storage as st
from study.results import confirmed
from study.results.schema import CONFIRM, STUDY_JSON, TRIALS
from study.results.statistics import Baseline, at_chance_trials, best_verdict, rank_column, ranked
from study.results.tables import read_json, read_table
from study.storage import join


def print_confirmed(df: pd.DataFrame | None, study_dir: str) -> None:
    if df is None or df.empty:
        return
    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False}
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        shown = confirmed.display(df)
        if not shown.empty:
            print(f"\nconfirmed ranking (by the mean over repeats on validation) - {study_dir}")
            print(shown.to_string(index=False))
        print("\nsingle tuning models, refit and ensemble (test split; *_tta: with --tta)")
        print(confirmed.finals(df).to_string(**fmt))
    for _, r in df[df["error"] != ""].iterrows():
        print(f"note: {r['kind']} run of {r['trial_id']} (seed {r['seed']}): {r['error']}")


def print_leaderboard(study_dir: str, settings: dict[str, Any], n: int = 10) -> None:

    trials = read_table(study_dir, TRIALS)
    if trials is None:
        print("no trial reported a result")
        return
    cols = [
        "trial_id",
        "model",
        "status",
        "epochs",
        "val_acc_avg",
        "val_acc_max",
        "test_acc",
        "test_acc_ci_low",
        "test_acc_ci_high",
        "params",
        "epoch_s_mean",
    ]
    column, larger = rank_column(settings)  # the report's ranking; errored trials last
    show = cols if column in cols else [*cols, column]
    top = trials.sort_values(column, ascending=not larger)[show].head(n)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(
            f"\nleaderboard (by {column}, validation; test acc only for the best trials, on the "
            f"test split, 95% CI) - {st.redact(study_dir)}"
        )
        print(top.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


# what `python -m study.run --space demo` must show on 2 idle CPU cores
DEMO_TARGETS = {"best_test_acc": 0.80, "median_best_val": 0.40, "spread": 0.15, "wall_s": 360.0}


ENDED = ("finished", "stopped")


def four_numbers(
    trials: pd.DataFrame, meta: Mapping[str, Any], rank: Mapping[str, Any]
) -> dict[str, Any]:
    """The numbers as a dict (NaN where the study has none, e.g. no trial was evaluated)."""
    ended = trials[trials["status"].isin(ENDED) & trials["val_acc_max"].notna()]
    tested = ranked(trials[trials["test_acc"].notna()], dict(rank))
    best = tested.iloc[0] if len(tested) else None
    nan = float("nan")
    return {
        "best_trial": None if best is None else str(best["trial_id"]),
        "best_test_acc": nan if best is None else float(best["test_acc"]),
        "ci": (nan, nan)
        if best is None
        else (float(best["test_acc_ci_low"]), float(best["test_acc_ci_high"])),  # fmt: skip
        "n_test": int(meta.get("dataset", {}).get("counts", {}).get("test", 0)),
        "ended": len(ended),
        "median_best_val": float(ended["val_acc_max"].median()) if len(ended) else nan,
        "spread": float(ended["val_acc_max"].max() - ended["val_acc_max"].min())
        if len(ended)
        else nan,
        "wall_s": float(meta.get("wall_s", nan)),
    }


def chance_lines(trials: pd.DataFrame, base: Baseline) -> list[str]:
    """One line per trial that ended without beating guessing, saying whether it was tested."""
    ended = trials[trials["status"].isin(ENDED)]
    lines = []
    for _, t in ended[at_chance_trials(ended, base)].iterrows():
        tested = "" if pd.isna(t.get("test_acc")) else "; it was evaluated on the test split"
        verdict = best_verdict(float(t["val_acc_max"]), int(t["epochs"]), base)
        lines.append(f"[{t['trial_id']}] {t.get('model', '')} {verdict}{tested}")
    return lines


def format_summary(numbers: Mapping[str, Any], demo: bool) -> str:
    n = numbers
    load = os.getloadavg()
    target = DEMO_TARGETS if demo else {}

    def goal(key: str, fmt: str, less: bool = False) -> str:
        if key not in target:
            return ""
        ok = n[key] <= target[key] if less else n[key] >= target[key]
        return f"   (demo target {'<=' if less else '>='} {target[key]:{fmt}}: " + (
            "met)" if ok else "NOT met)"
        )

    lo, hi = n["ci"]
    return "\n".join(
        [
            "\nthe four numbers",
            f"  best test acc       {n['best_test_acc']:.3f} (95% CI {lo:.3f}-{hi:.3f}, test "
            f"split, {n['n_test']} images; trial {n['best_trial']}){goal('best_test_acc', '.2f')}",
            f"  median best val acc {n['median_best_val']:.3f} (over {n['ended']} finished or "
            f"stopped trials){goal('median_best_val', '.2f')}",
            f"  spread best-worst   {n['spread']:.3f} (their best val acc){goal('spread', '.2f')}",
            f"  wall time           {n['wall_s']:.0f} s (Ray start to the last evaluation; load "
            f"{load[0]:.2f}/{load[1]:.2f} (1/5 min) on {os.cpu_count()} CPUs)"
            f"{goal('wall_s', '.0f', less=True)}",
        ]
    )


def print_summary(study_dir: str, manifest: Mapping[str, Any], rank: Mapping[str, Any]) -> None:
    """What run.py prints after the leaderboard."""
    trials = read_table(study_dir, TRIALS)
    if trials is None or trials.empty:
        return
    meta = read_json(join(study_dir, STUDY_JSON))
    print(format_summary(four_numbers(trials, meta, rank), meta.get("space") == "demo"))
    probe, verdict = confirmed.probe_summary(read_table(study_dir, CONFIRM), trials, dict(rank))
    if probe:
        print("\nthe linear probe: the bar tuning must beat")
        for line in [*probe, verdict] if verdict else probe:
            print(f"  {line}")
    for line in chance_lines(trials, Baseline.from_manifest(manifest)):
        print(line)
