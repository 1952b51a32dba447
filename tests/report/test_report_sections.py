"""Report sections that answer "which architecture is best": plain data checked by hand, one
built page of a two-family study, and the live report callback driven without Ray workers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from report_fixture import HYPERPARAMETERS, T0, make_study

from study.report import architectures, build_compare_report, history, load_study
from study.report.compare import compare_rows
from study.report.summary import config_split, smoke_note
from study.tuning.live_report import LiveReport, live_report_callbacks

SETTINGS = {"metric": "val_acc", "mode": "max"}
FAMILIES = ("googlenet", "vanilla_cnn")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_study(tmp_path_factory.mktemp("sections"), n_trials=12, models=FAMILIES)


@pytest.fixture(scope="module")
def page(study: Path, tmp_path_factory) -> str:
    from study.report import build_report

    return build_report(str(study), str(tmp_path_factory.mktemp("out"))).read_text()


def test_family_table_by_hand(study: Path) -> None:
    d = load_study(str(study))
    t = d.trials
    rows = architectures.family_table(
        t, HYPERPARAMETERS, SETTINGS, d.predictions, d.classes, pd.Series(np.nan, index=t.index)
    )
    fam = rows[rows["variant"] == "all"].set_index("family")
    assert list(fam.index) == list(FAMILIES)
    for name, g in t.groupby("model"):
        done = g[g["status"].isin(["finished", "stopped"])]
        assert fam.loc[name, "trials"] == len(g)
        assert fam.loc[name, "finished"] == (g["status"] == "finished").sum()
        assert fam.loc[name, "best max val acc"] == pytest.approx(done["val_acc_max"].max())
        assert fam.loc[name, "median max val acc"] == pytest.approx(done["val_acc_max"].median())
    # the best googlenet was evaluated on the test split: its CI is on the family row
    assert fam.loc["googlenet", "ci low"] < fam.loc["googlenet", "test acc"]
    # discrete scientific variants split the family; a continuous knob (dropout) does not
    sw = rows[rows["variant"].str.startswith("extra_inception_3=")]
    assert sw.groupby("family")["trials"].sum().to_dict() == fam["trials"].to_dict()
    assert list(sw[sw["family"] == "googlenet"]["variant"]) == [
        "extra_inception_3=0",
        "extra_inception_3=1",
    ]
    assert not rows["variant"].str.startswith("dropout=").any()
    # a family's own architecture options are variants even when the space calls them nuisance
    hps = {
        "depth": {"role": "nuisance", "kind": "int", "low": 3, "high": 5},
        "lr": {"role": "nuisance", "kind": "float"},
        "batch_size": {"role": "nuisance", "kind": "int"},
        "extra_inception_3": {"role": "scientific", "kind": "int", "low": 0, "high": 1},
    }
    assert architectures.variant_names("vanilla_cnn", hps) == ["depth", "extra_inception_3"]
    assert architectures.variant_names("googlenet", hps) == ["extra_inception_3"]


def test_verdict_against_the_noise() -> None:
    def table(a, b, ci_a=(np.nan, np.nan), ci_b=(np.nan, np.nan)):
        return pd.DataFrame(
            {
                "family": ["x", "y"],
                "variant": ["all", "all"],
                "best max val acc": [a, b],
                "ci low": [ci_a[0], ci_b[0]],
                "ci high": [ci_a[1], ci_b[1]],
                "test acc": [np.mean(ci_a), np.mean(ci_b)],
            }
        )

    # test CIs decide when both families have them
    assert "exceeds the noise" in architectures.verdict(
        table(0.9, 0.7, (0.85, 0.95), (0.6, 0.8)), 100
    )
    assert "within the noise" in architectures.verdict(
        table(0.9, 0.8, (0.8, 0.95), (0.7, 0.85)), 100
    )
    # else the binomial noise of n validation images: 1.96 * sqrt((.09 + .16) / 100) = 0.098
    assert "more than the sampling noise" in architectures.verdict(table(0.9, 0.8 - 0.01), 100)
    assert "±0.098" in architectures.verdict(table(0.9, 0.8), 100)
    assert "within the noise" in architectures.verdict(table(0.9, 0.85), 100)
    assert "unknown" in architectures.verdict(table(0.9, 0.8), None)
    # one family evaluated: its test CI is named, nothing is compared with it
    one = architectures.verdict(table(0.9, 0.7, (0.85, 0.95)), 100)
    assert "only x's best was evaluated (0.900, 95 % CI 0.850–0.950)" in one
    assert "Only one model family" in architectures.verdict(table(0.9, np.nan), 100)


def test_gflops_counted_from_the_config() -> None:
    from study.report.architectures import _count_gflops

    trials = pd.DataFrame(
        {
            "model": ["vanilla_cnn", "vanilla_cnn", "googlenet", "googlenet", "nonesuch"],
            "config/depth": [3, 5, None, None, None],
            "config/extra_inception_3": [None, None, 0, 1, None],
            "config/width_mult": [None, None, 0.25, 0.25, None],
            "config/head_dense": ["[]", "[]", "[64]", "[64]", "[]"],
            "config/lr_adam": [1e-3] * 5,  # a suggestion, not a model option: ignored
            "config/dropout": [0.1, 0.5, 0.2, 0.3, 0.1],
        }
    )
    g, notes = architectures.trial_gflops(trials, num_classes=7, image_size=32)
    assert g[0] == pytest.approx(
        _count_gflops("vanilla_cnn", '{"depth": 3, "head_dense": []}', 7, 32)
    )
    assert g[0] != g[1] and g[3] > g[2] > 0  # depth and an extra Inception block cost FLOPs
    assert math.isnan(g[4]) and "nonesuch" in notes[0]
    assert architectures.trial_gflops(trials.assign(gflops=1.5), 7, 32)[0].eq(1.5).all()
    # a study resumed from before the column: its trials that reported without one are counted,
    # one that has not reported yet (0 epochs) is not
    mixed = trials.assign(gflops=[1.5, np.nan, np.nan, 1.5, 1.5], epochs=[1, 1, 0, 1, 1])
    g2, _ = architectures.trial_gflops(mixed, 7, 32)
    assert g2[0] == 1.5 and g2[1] == pytest.approx(g[1]) and math.isnan(g2[2])


def test_history_by_hand() -> None:
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d"],
            "config/seed": [2, 0, 1, 3],
            "val_acc_max": [0.5, 0.4, np.nan, 0.7],
            "status": ["finished", "stopped", "errored", "running"],
            "status_reason": ["done", "ASHA", "boom", ""],
            "model": ["m"] * 4,
        }
    )
    bt = history.by_trial(trials, SETTINGS, 0)
    assert bt["number"].tolist() == [0, 2, 3] and bt["trial_id"].tolist() == ["b", "a", "d"]
    assert bt["best"].tolist() == [0.4, 0.5, 0.7]
    assert history.optuna_numbers(trials, 1) is None  # seeds do not fit study seed 1
    epochs = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "d"],
            "epoch": [1, 2, 1, 1],
            "val_acc": [0.3, 0.5, 0.4, 0.2],
            "epoch_s": [10.0, 10.0, 5.0, 5.0],
            "time": [T0 + 10, T0 + 20, T0 + 12, T0 + 20],
        }
    )
    bt = history.by_time(epochs, SETTINGS)
    assert bt["best"].tolist() == [0.3, 0.4, 0.5, 0.5]
    spans = history.timeline(trials, epochs).set_index("trial_id")
    t0 = pd.Timestamp(T0, unit="s", tz="UTC")
    assert spans.loc["a", "start"] == t0 and spans.loc["a", "end"] == t0 + pd.Timedelta("20s")
    assert spans.loc["b", "reason"] == "ASHA" and "c" not in spans.index  # no epochs, no span
    run = history.concurrency(spans.reset_index())
    # a [0, 20], b [7, 12], d [15, 20]: at most 2 at once, none at the end
    assert run["running"].max() == 2 and run["running"].iloc[-1] == 0
    assert history.timeline(trials, epochs.drop(columns="time")) is None


def test_config_split_and_smoke(tmp_path: Path) -> None:
    d = load_study(str(make_study(tmp_path, "s", statuses=["finished", "stopped"], smoke=True)))
    split = config_split(d.trials, d.hyperparameters)
    assert "dropout" in split["searched"] and split["searched"]["l2"] == "0, 1e-05, 0.0001"
    # the constants study.run adds to every config, as a real trials.parquet holds them
    assert split["fixed"] == {"image_size": "32", "max_epochs": "8", "model": "googlenet"}
    assert split["internal"] == {"metric": "val_acc", "mode": "max", "seed": "per trial"}
    assert "SMOKE TEST" in smoke_note(d.meta)
    rows = compare_rows([d])
    assert rows["study"].tolist() == ["s (smoke test)"]
    out = build_compare_report([str(tmp_path / "s")], str(tmp_path / "cmp")).read_text()
    assert "s (smoke test)" in out and not (tmp_path / "cmp" / "assets").exists()


def test_page_answers_which_architecture(page: str) -> None:
    arch = page[page.index('<section id="architectures"') : page.index('<section id="leaderboard"')]
    assert "Verdict:" in arch and "googlenet leads vanilla_cnn" in arch
    assert arch.count("js-plotly-plot") == 0 and arch.count("plotly-graph-div") == 1
    hist = page[page.index('<section id="history"') : page.index('<section id="curves"')]
    assert hist.count("plotly-graph-div") == 2  # best so far; timeline with concurrency
    # every evaluated trial has its own confusion matrix, the best one shown first
    best = page[page.index('<section id="best"') : page.index('<section id="gradcam"')]
    assert best.count('class="tab"') == 2 and best.count("plotly-graph-div") == 2
    assert 'id="eval-1" role="tabpanel" hidden' in best
    assert "running: 11 of 12 trials done" in page  # one of the trials is running
    assert "optuna #" in page and "GFLOPs" in page


def _trial(tid: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid)


def test_live_report_throttles_and_never_raises(tmp_path: Path, caplog) -> None:
    study = make_study(
        tmp_path, "live", statuses=["finished", "running", "stopped"], tables=("trials",)
    )
    now = [1000.0]
    live = LiveReport(str(study), str(tmp_path / "page"), every_s=60, clock=lambda: now[0])
    live.on_trial_complete(1, [], _trial("t000"))
    live.wait()
    page = (tmp_path / "page" / "index.html").read_text()
    assert live.builds == 1 and "running: 2 of 3 trials done" in page
    assert '<meta http-equiv="refresh" content="60">' in page
    now[0] += 30  # within the quiet period: nothing written, one rewrite owed
    live.on_trial_complete(2, [], _trial("t001"))
    live.on_step_end(3, [])
    assert live.builds == 1
    now[0] += 31
    live.on_step_end(4, [])  # the owed rewrite, once the period has passed
    live.wait()
    assert live.builds == 2
    live.on_step_end(5, [])
    assert live.builds == 2  # nothing new happened
    live.on_experiment_end([])  # the final counts, whatever the period
    assert live.builds == 3
    broken = LiveReport(str(tmp_path / "gone"), str(tmp_path / "x"), clock=lambda: now[0])
    broken.on_trial_error(1, [], _trial("t"))  # a report that fails does not stop the study
    broken.wait()
    assert broken.failures == 1 and "live report not written" in caplog.text
    assert live_report_callbacks(str(study), None) == []
    from ray.tune import Callback  # the hooks are Tune's own: a misspelt one is never called

    assert all(hasattr(Callback, m) for m in ("on_step_end", "on_trial_complete", "on_trial_error"))
    # once study.json records the end, the page has no banner and stops reloading
    meta = json.loads((study / "study.json").read_text())
    (study / "study.json").write_text(json.dumps(meta | {"finished": "2025-01-01T02:00:00"}))
    live.on_experiment_end([])
    page = (tmp_path / "page" / "index.html").read_text()
    assert "running:" not in page and "http-equiv" not in page


def test_live_report_builds_off_tunes_callback_thread(tmp_path: Path) -> None:
    """A build (about 1 s on a real study) must not stall Tune's loop: the callback returns while
    the page is still being built, a second rewrite is not started meanwhile, and the final one
    waits for the build in flight."""
    import threading

    started, release = threading.Event(), threading.Event()
    callers: list[str] = []

    def slow_build(*args, **kwargs) -> None:
        callers.append(threading.current_thread().name)
        started.set()
        release.wait(10)

    now = [0.0]
    live = LiveReport("s", "o", every_s=60, clock=lambda: now[0], build=slow_build)
    live.on_trial_complete(1, [], _trial("t000"))  # returns with the build still running
    assert started.wait(5) and live.busy() and live.builds == 0
    now[0] += 120
    live.on_trial_result(2, [], _trial("t000"), {})
    live.on_step_end(2, [])  # owed, but one build at a time
    assert len(callers) == 1
    release.set()
    live.wait(5)
    assert live.builds == 1 and callers == ["live-report"]
    live.on_experiment_end([])  # the final build runs in the caller's thread
    assert live.builds == 2 and callers[-1] == threading.current_thread().name
    import pickle

    plain = LiveReport("s", "o")  # Tune pickles its callbacks, a thread in flight included
    plain._thread = threading.Thread(target=release.wait)
    assert pickle.loads(pickle.dumps(plain)).busy() is False
