"""Report: a trial that never beat guessing says so in the leaderboard ("at chance after N
epoch(s)"), with the same binomial verdict as the console (study.results.statistics)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from report_fixture import HYPERPARAMETERS, make_study

from study.report import build_report
from study.report.leaderboard import baseline, chance_labels, leaderboard
from study.results.statistics import Baseline

SETTINGS = {"metric": "val_acc", "mode": "max"}


def test_chance_labels_by_hand() -> None:
    toon = Baseline(7, 504)  # guessing 1/7 on 504 val images: best of 3 epochs <= ~0.177
    trials = pd.DataFrame(
        {"val_acc_max": [0.17, 0.60, math.nan, 0.17], "epochs": [3, 3, 0, 4]},
        index=[10, 11, 12, 13],
    )
    labels = chance_labels(trials, toon)
    assert labels.tolist() == [
        "at chance after 3 epoch(s)",
        "",  # learned
        "",  # not validated yet: nothing to say
        "at chance after 4 epoch(s)",
    ]
    assert labels.index.tolist() == [10, 11, 12, 13]


def test_baseline_from_study_json() -> None:
    ds = {"classes": list("abcdefg"), "counts": {"val": 504}}
    assert baseline({"dataset": ds}) == Baseline(7, 504)
    # the largest class's share where study.json records the class counts (manga: shock 22 %)
    counts = {c: {"val": 6} for c in "abcdef"} | {"g": {"val": 12}}
    base = baseline({"dataset": {**ds, "counts": {"val": 48}, "class_counts": counts}})
    assert base is not None and base.p0 == 0.25
    assert baseline({}) is None
    assert baseline({"dataset": {"classes": ["a"], "counts": {}}}) is None


def test_leaderboard_and_page_name_the_trial_at_chance(tmp_path: Path) -> None:
    d = make_study(tmp_path, n_trials=8)
    path = d / "trials.parquet"
    t = pd.read_parquet(path)
    stuck = t.index[t["status"] == "stopped"][0]
    # 4 classes on 80 val images: 0.26 after 3 epochs is what guessing scores
    t.loc[stuck, ["val_acc_max", "epochs"]] = [0.26, 3]
    t.to_parquet(path)
    stuck_id = t.loc[stuck, "trial_id"]

    meta = json.loads((d / "study.json").read_text())
    board = leaderboard(t, HYPERPARAMETERS, SETTINGS, baseline=baseline(meta))
    learned = board.set_index("trial")["learned"]
    assert learned[stuck_id] == "at chance after 3 epoch(s)"
    assert (learned.drop(stuck_id) == "").all()  # the fixture's other trials all learned
    assert "learned" not in leaderboard(t, HYPERPARAMETERS, SETTINGS)

    page = build_report(str(d), str(tmp_path / "out")).read_text()
    assert page.count("at chance after 3 epoch(s)") == 1
