"""The four numbers printed at the end of every study, and the trials that never beat guessing.

1. the best trial's test accuracy (best by validation among those evaluated on the test split),
   with its 95 % bootstrap CI and the split's size;
2. the median, over the trials that ended normally (finished or stopped by ASHA), of each
   trial's best validation accuracy: did the typical trial learn?
3. the spread of those best validation accuracies (best - worst): did the choices matter?
4. the study's wall time (Ray start to the end of test evaluation) with the machine's load.

The demo's targets (issue #13) are printed beside them when the study ran the `demo` space.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from study.chance import Baseline, at_chance_trials, best_verdict
from study.metrics import ranked

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
            f"  wall time           {n['wall_s']:.0f} s (Ray start to test evaluation; load "
            f"{load[0]:.2f}/{load[1]:.2f} (1/5 min) on {os.cpu_count()} CPUs)"
            f"{goal('wall_s', '.0f', less=True)}",
        ]
    )


def print_summary(study_dir: str, manifest: Mapping[str, Any], rank: Mapping[str, Any]) -> None:
    """What run.py prints after the leaderboard."""
    from study.storage import join
    from study.tables import STUDY_JSON, TRIALS, read_json, read_table

    trials = read_table(study_dir, TRIALS)
    if trials is None or trials.empty:
        return
    meta = read_json(join(study_dir, STUDY_JSON))
    print(format_summary(four_numbers(trials, meta, rank), meta.get("space") == "demo"))
    for line in chance_lines(trials, Baseline.from_manifest(manifest)):
        print(line)
