"""Report: plain-data computations by hand, loading bad input, and building pages from fixtures."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.offline
import pytest
from report_fixture import EVIL, make_study

from study.report import (
    ReportInputError,
    build_compare_report,
    build_report,
    evaluated,
    load_study,
)
from study.report.__main__ import main
from study.report.compare import compare_rows
from study.report.costs import pareto_front
from study.report.hyperparameters import axis_data, edge
from study.report.importance import param_importances
from study.report.leaderboard import leaderboard
from study.report.summary import rank_note, status_counts
from study.report.trials import best_trial, hp_values, variants
from study.results.statistics import binomial_ci
from study.spaces.settings import stopped_early

SETTINGS = {"metric": "val_acc", "mode": "max"}


def test_pareto_front_by_hand() -> None:
    cost = np.array([1, 2, 3, 4, 2])
    acc = np.array([0.5, 0.7, 0.6, 0.9, 0.7])
    # (3, .6) is dominated by (2, .7); the duplicate (2, .7) pair dominates neither of them.
    assert pareto_front(cost, acc).tolist() == [True, True, False, True, True]
    assert pareto_front(np.array([5.0]), np.array([0.1])).tolist() == [True]


def test_confusion_normalisation_and_per_class_scores() -> None:
    labels = pd.Series(["a", "a", "a", "b", "b", "c"])
    preds = pd.Series(["a", "a", "b", "b", "a", "a"])
    counts, norm = evaluated.confusion(labels, preds, ["a", "b", "c", "d"])
    assert counts.loc["a"].tolist() == [2, 1, 0, 0] and counts.loc["c"].tolist() == [1, 0, 0, 0]
    assert norm.loc["a"].tolist() == pytest.approx([2 / 3, 1 / 3, 0, 0])
    assert norm.loc["b"].tolist() == pytest.approx([0.5, 0.5, 0, 0])
    assert norm.loc["d"].isna().all()  # no true "d": undefined, not zero
    s = evaluated.per_class_scores(counts)
    assert s.loc["a", "precision"] == pytest.approx(0.5)  # 2 of 4 "a" predictions right
    assert s.loc["a", "recall"] == pytest.approx(2 / 3)
    assert s.loc["a", "f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.loc["c", ["precision", "recall", "f1"]].tolist() == [0, 0, 0]
    assert s.loc["macro avg", "support"] == 6
    assert s.loc["macro avg", "recall"] == pytest.approx((2 / 3 + 0.5 + 0 + 0) / 4)


def test_label_names_from_indices() -> None:
    assert evaluated.label_names(pd.Series([1, 0]), ["x", "y"]).tolist() == ["y", "x"]
    assert evaluated.label_names(pd.Series(["y"]), ["x", "y"]).tolist() == ["y"]


def test_edge_only_where_the_range_can_widen() -> None:
    assert edge(0.05, 0.01, 1) == "low" and edge(0.95, 0, 1) == "high"
    assert edge(0.5, 0, 1) is None
    assert edge(1.5e-4, 1e-4, 1e-1, log=True) == "low"  # 6 % of the way in log space
    assert edge(1e-2, 1e-4, 1e-1, log=True) is None  # 67 %, though 10 % linearly
    # head_layers=0 of 0..2, dropout 0 of 0..0.6: nothing below 0 to widen to (bug 4)
    assert edge(0, 0, 2) is None and edge(0.0, 0.0, 0.6) is None
    assert edge(2, 0, 2) == "high"


def test_status_counts() -> None:
    trials = pd.DataFrame({"status": ["finished", "stopped", "stopped", "errored", "odd"]})
    c = status_counts(trials)
    assert (c["finished"], c["stopped"], c["errored"], c["running"], c["odd"]) == (1, 2, 1, 0, 1)
    assert c["total"] == 5


def _trials(tmp_path: Path, **kw) -> pd.DataFrame:
    return pd.read_parquet(make_study(tmp_path, **kw) / "trials.parquet")


def test_leaderboard_columns(tmp_path: Path) -> None:
    from report_fixture import HYPERPARAMETERS

    t = _trials(tmp_path, n_trials=8)
    board = leaderboard(t, HYPERPARAMETERS, SETTINGS, study_seed=0)
    assert len(board) == len(t)
    # Errored and diverged trials are not ranked: listed after the others, best first.
    assert set(board["status"].iloc[-2:]) == {"errored", "diverged"}
    ranked = board["max val acc"].iloc[:-2].tolist()
    assert ranked == sorted(ranked, reverse=True)
    assert board["rank"].tolist() == [str(i) for i in range(1, 7)] + ["", ""]
    # Optuna's trial number (from the per-trial seed) beside Ray's trial id
    assert board.set_index("trial")["optuna #"].to_dict() == {f"t{i:03d}": i for i in range(8)}
    # one column per searched hyperparameter, conditional ones blank where not set; no variant
    # string, no fixed image_size, no constant data-set column (the summary names it)
    assert "variant" not in board and "data set" not in board and "image_size" not in board
    assert {"dropout", "lr_adam", "lr_sgd", "head_width_0", "l2"} <= set(board.columns)
    assert (board["lr_adam"] == "").sum() + (board["lr_sgd"] == "").sum() == len(t)
    two = leaderboard(
        pd.concat([t, t.assign(dataset="manga", trial_id="x")]), HYPERPARAMETERS, SETTINGS
    )
    assert "data set" in two and "optuna #" not in two  # no study seed: no trial numbers
    # A metric without a trials column is ranked by val_acc_max, and the page says so.
    other = {"metric": "val_macro_f1", "mode": "max"}
    assert leaderboard(t, HYPERPARAMETERS, other)["trial"].equals(board["trial"])
    assert "val_macro_f1" in rank_note(other) and rank_note(SETTINGS) is None


def test_hp_values_from_suggestions_with_conditionals() -> None:
    trials = pd.DataFrame(
        {
            "config/lr": [0.1, 0.001],
            "config/seed": [1, 2],
            "config/optimizer": ["sgd", "adam"],
            "config/suggested": [
                json.dumps({"optimizer": "sgd", "lr_sgd": 0.1}),
                json.dumps({"optimizer": "adam", "lr_adam": 0.001}),
            ],
        }
    )
    hps = {
        "optimizer": {"role": "nuisance", "kind": "categorical", "choices": ["sgd", "adam"]},
        "lr_sgd": {"role": "nuisance", "kind": "float", "low": 1e-3, "high": 1.0},
        "lr_adam": {"role": "nuisance", "kind": "float", "low": 1e-4, "high": 1e-2},
    }
    for spec in (hps, {}):  # from study.json's names, or from the suggestions alone
        v = hp_values(trials, spec)
        assert list(v.columns) == ["optimizer", "lr_sgd", "lr_adam"]
        assert v["lr_sgd"].tolist()[0] == 0.1 and np.isnan(v["lr_sgd"].tolist()[1])
    assert variants(trials, hps).tolist() == [
        "optimizer=sgd, lr_sgd=0.1",
        "optimizer=adam, lr_adam=0.001",
    ]
    # Without suggestions or study.json: the varying config columns, never the per-trial seed.
    plain = trials.drop(columns="config/suggested")
    assert list(hp_values(plain, {}).columns) == ["lr", "optimizer"]


def test_axis_data_flags_best_at_edge() -> None:
    hps = {
        "lr": {"role": "scientific", "kind": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "act": {"role": "scientific", "kind": "categorical", "choices": ["relu", "gelu"]},
        "size": {"role": "fixed", "kind": "int", "low": 32, "high": 32},
    }
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["finished", "stopped", "errored"],
            "val_acc_max": [0.6, 0.9, np.nan],
            "config/lr": [1e-3, 0.09, 1e-2],
            "config/act": ["relu", "gelu", "relu"],
            "config/size": [32, 32, 32],
        }
    )
    axes = {a["name"]: a for a in axis_data(trials, hps, SETTINGS)}
    assert set(axes) == {"lr", "act"}  # fixed hyperparameters are not plotted
    assert axes["lr"]["best"] == 0.09 and axes["lr"]["at_edge"]
    assert axes["lr"]["x"] == [0.09, 1e-3]  # errored trial left out, best first
    assert axes["act"]["best"] == "gelu" and not axes["act"]["at_edge"]


def test_param_importances(tmp_path: Path) -> None:
    from report_fixture import HYPERPARAMETERS

    t = _trials(tmp_path, n_trials=24)
    imp, note, spread = param_importances(t, HYPERPARAMETERS, SETTINGS)
    assert imp is not None and "PED-ANOVA" in note
    assert set(imp) == set(HYPERPARAMETERS) - {"image_size"}  # conditional ones included
    assert sum(imp.values()) == pytest.approx(1.0)
    assert max(imp, key=imp.get) == "dropout"  # the fixture's accuracy depends most on it
    # which trials it uses, and why optuna-dashboard's differ
    n_done = t["status"].isin(["finished", "stopped"]).sum()
    assert f"of {n_done} trials" in note and "COMPLETE trials only" in note
    # the spread over seeded bootstrap resamples of the trials
    assert len(spread) >= 15 and set(spread.columns) == set(imp)
    again = param_importances(t, HYPERPARAMETERS, SETTINGS)[2]
    assert spread.equals(again) and spread["dropout"].std() > 0
    two = t[t["status"] == "finished"].head(2)
    imp, note, _ = param_importances(two, HYPERPARAMETERS, SETTINGS)
    assert imp is not None and "rough hint" in note and "Only 2 trials" in note
    tied = two.assign(val_acc_max=0.5)  # equal results cannot rank hyperparameters
    imp, note, _ = param_importances(tied, HYPERPARAMETERS, SETTINGS)
    assert imp is None and "not informative" in note
    one = t[t["status"] == "finished"].head(1)
    imp, note, _ = param_importances(one, HYPERPARAMETERS, SETTINGS)
    assert imp is None and "fewer than 2" in note


def test_test_accuracy_is_exact_from_predictions(tmp_path: Path) -> None:
    d = load_study(str(make_study(tmp_path)))
    best = best_trial(d.trials, d.settings, among=set(d.predictions["trial_id"]))
    test = evaluated.test_accuracy(best, d.predictions, d.classes)
    assert test["source"] == "Clopper–Pearson" and test["n"] == 40
    assert test["acc"] == pytest.approx(best["test_acc"])
    assert test["low"] < test["acc"] < test["high"]
    k = round(test["acc"] * 40)  # the exact interval of k correct of the 40 test images
    assert (test["low"], test["high"]) == binomial_ci(k, 40)


def test_load_errors_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="does not exist"):
        load_study(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="none of study.json, trials.parquet"):
        load_study(str(tmp_path / "empty"))
    d = make_study(tmp_path, "bad")
    pd.read_parquet(d / "trials.parquet").drop(columns=["val_acc_max"]).to_parquet(
        d / "trials.parquet"
    )
    with pytest.raises(ReportInputError, match=r"trials.parquet: missing column.*val_acc_max"):
        load_study(str(d))
    (d / "study.json").write_text("{not json")
    with pytest.raises(ReportInputError, match="study.json: not valid JSON"):
        load_study(str(d))


def test_partial_study_renders_and_names_missing_files(tmp_path: Path, caplog) -> None:
    d = make_study(tmp_path, tables=("trials",))
    # files are written whole, so a damaged one is an error naming it (a page without its
    # contents would pass for a study that has none: tests/results/test_corrupt_files.py)
    (d / "epochs.parquet").write_bytes(b"half-written")
    with pytest.raises(ReportInputError, match=rf"{d}/epochs.parquet: not a readable Parquet"):
        load_study(str(d))
    (d / "epochs.parquet").unlink()
    data = load_study(str(d))
    assert data.epochs is None
    notes = " ".join(data.notes)
    assert "predictions.parquet is missing" in notes and "gradcam.parquet is missing" in notes
    page = build_report(str(d), str(tmp_path / "out")).read_text()
    assert "What is missing" in page and "gradcam.parquet is missing" in page
    assert "No test predictions yet" in page and "No epochs recorded yet" in page
    assert "fixture: gradcam.parquet is missing" in caplog.text  # also logged for the CLI


def test_full_report_is_offline_and_escaped(tmp_path: Path) -> None:
    d = make_study(tmp_path, n_trials=12)
    index = build_report(str(d), str(tmp_path / "out"))
    page = index.read_text()
    assert index.name == "index.html"
    assert (index.parent / "assets" / "plotly.min.js").read_text() == plotly.offline.get_plotlyjs()
    assert '<script src="assets/plotly.min.js">' in page
    assert "cdn.plot.ly" not in page and 'src="http' not in page
    assert EVIL not in page and html.escape(EVIL) in page  # HTML-escaped, never raw
    for section in (
        "summary",
        "architectures",
        "leaderboard",
        "history",
        "curves",
        "hyperparameters",
        "cost",
        "best",
        "gradcam",
    ):
        assert f'<section id="{section}"' in page
    # architectures 1, history 2, curves 1, hyperparameters 3, cost 1, 2 evaluated trials
    assert page.count('class="plotly-graph-div"') == 10
    assert 'class="scroll"' not in page  # no fixed-height box hiding leaderboard rows
    assert "still running" in page  # the fixture has running trials and no finish time
    assert stopped_early() in page and "95 % CI" in page


@pytest.mark.parametrize(
    "statuses,expect",
    [
        (["finished"], "fewer than 2 finished trials"),
        (["errored", "running", "stopped"], "No test predictions yet"),
        (["errored", "errored"], "none has reported a validation accuracy yet"),
    ],
)
def test_small_or_unfinished_studies_render(tmp_path: Path, statuses, expect) -> None:
    d = make_study(tmp_path, statuses=statuses)
    page = build_report(str(d), str(tmp_path / "out")).read_text()
    assert expect in page


def test_study_without_study_json_renders(tmp_path: Path) -> None:
    d = make_study(tmp_path, "nojson", study_json=False)
    page = build_report(str(d), str(tmp_path / "out")).read_text()
    assert "study.json is missing" in page and "Study nojson" in page


def test_default_out_dir_and_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    d = make_study(tmp_path, "my study")
    monkeypatch.chdir(tmp_path)
    assert build_report(str(d)) == Path("reports/my_study/index.html")
    assert main([str(d), "--out", "x"]) == 0
    assert capsys.readouterr().out.strip() == str(Path("x/index.html"))
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])
    with pytest.raises(SystemExit):
        main([str(d), "--compare", str(d)])


def test_compare(tmp_path: Path) -> None:
    a = make_study(tmp_path, "a", n_trials=8)
    b = make_study(tmp_path, "b", n_trials=6, model="resnet18", dataset="manga", seed=1)
    rows = compare_rows([load_study(str(a)), load_study(str(b))])
    assert rows[["study", "model", "data set"]].values.tolist() == [
        ["a", "googlenet", "toon"],
        ["b", "resnet18", "manga"],
    ]
    ta = pd.read_parquet(a / "trials.parquet")
    assert rows["max val acc"].iloc[0] == ta["val_acc_max"].max()
    assert (rows["ci low"] < rows["test acc"]).all() and (rows["test acc"] < rows["ci high"]).all()
    out = tmp_path / "cmp"
    result = subprocess.run(
        [sys.executable, "-m", "study.report", "--compare", str(a), str(b), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    page = (out / "index.html").read_text()
    assert page.count('class="plotly-graph-div"') == 1 and "resnet18" in page
    with pytest.raises(ReportInputError, match="does not exist"):
        build_compare_report([str(a), str(tmp_path / "gone")], str(out))


def test_study_json_schema_used(tmp_path: Path) -> None:
    d = make_study(tmp_path)
    meta = json.loads((d / "study.json").read_text())
    meta["hyperparameters"]["dropout"]["kind"] = "complex"
    (d / "study.json").write_text(json.dumps(meta))
    with pytest.raises(ReportInputError, match=r"study.json: hyperparameters.dropout.kind"):
        build_report(str(d), str(tmp_path / "out"))
    meta["hyperparameters"]["dropout"]["kind"] = "float"
    meta["settings"]["grace_period"] = 0
    (d / "study.json").write_text(json.dumps(meta))
    with pytest.raises(ReportInputError, match=r"settings.grace_period must be a positive"):
        load_study(str(d))
    assert not (tmp_path / "out").exists()  # refused before writing anything
