"""trials.parquet's rows without Ray: how a trial ended (`trial_status`), its row
(`summarise_trial`), and the one writer of the table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study.results.tables import read_table
from study.results.trials import (
    TEST_COLUMNS,
    config_dtypes,
    record_test_scores,
    summarise_trial,
    trial_status,
    write_trials,
)
from study.spaces.settings import SpaceSettings, stopped_early

SETTINGS = SpaceSettings(dataset="toon", description="unit", max_epochs=4, grace_period=1)


# ------------------------------------------------------------------ trial_status


@pytest.mark.parametrize(
    ("last", "errored", "error", "expected"),
    [
        (None, True, "ValueError: bad", ("errored", "ValueError: bad")),
        (None, True, "", ("errored", "the trial raised an error")),
        (None, False, "", ("running", "")),
        ({}, False, "", ("running", "")),
        ({"end_reason": "max_epochs", "epoch": 4}, False, "", ("finished", "max_epochs")),
        (
            {"end_reason": "diverged", "error": "loss is nan", "epoch": 2},
            False,
            "",
            ("diverged", "loss is nan"),
        ),
        ({"end_reason": "diverged"}, False, "", ("diverged", "loss became NaN/inf")),
        ({"end_reason": "oom", "error": "CUDA OOM at 2"}, False, "", ("errored", "CUDA OOM at 2")),
        ({"epoch": 2}, False, "", ("stopped", f"{stopped_early()} after epoch 2")),
        (
            {"epoch": 3, "restore_note": "restored from epoch 2"},
            False,
            "",
            ("stopped", f"{stopped_early()} after epoch 3 (restored from epoch 2)"),
        ),
        (
            {"end_reason": "max_epochs", "restore_note": "retried"},
            False,
            "",
            ("finished", "max_epochs (retried)"),
        ),
    ],
)
def test_trial_status_reads_how_a_trial_ended(last, errored, error, expected) -> None:
    assert trial_status(last, errored, error) == expected


# ---------------------------------------------------------------- summarise_trial


def _epochs(acc: list[float], loss: list[float] | None = None) -> pd.DataFrame:
    n = len(acc)
    return pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "val_acc": acc,
            "val_loss": loss or [1.0] * n,
            "epoch_s": [2.0] * n,
        }
    )


CONFIG = {
    "model": "vanilla_cnn",
    "lr": 0.01,
    "seed": 20_003,
    "suggested": {"lr_adam": 0.01, "optimizer": "adam"},
}


def test_summarise_trial_scores_its_epochs_and_flattens_its_config() -> None:
    # epochs arrive out of order (a retried trial re-reports): scored in epoch order
    e = _epochs([0.5, 0.7, 0.6], [0.9, 0.5, 0.6]).iloc[[2, 0, 1]]
    last = {"params": 1234, "node": "n1", "device": "cpu", "end_reason": "max_epochs"}
    row = summarise_trial("t1", CONFIG, e, last, ("finished", "max_epochs"), "toon")
    assert (row["trial_id"], row["status"], row["status_reason"]) == (
        "t1",
        "finished",
        "max_epochs",
    )
    assert row["epochs"] == 3 and row["best_epoch"] == 2
    assert row["val_acc_avg"] == pytest.approx(0.6) and row["val_acc_max"] == 0.7
    assert (row["val_acc_last"], row["val_loss_last"]) == (0.6, 0.6)
    assert row["wall_s"] == 6.0 and row["epoch_s_mean"] == 2.0
    assert (row["params"], row["node"], row["device"]) == (1234, "n1", "cpu")
    assert (row["model"], row["dataset"], row["seed"]) == ("vanilla_cnn", "toon", 20_003)
    assert all(math.isnan(row[c]) for c in TEST_COLUMNS)  # the test split is read after tuning
    # every config key and every raw suggestion a column; the suggestions also whole
    assert row["config/lr"] == 0.01 and row["config/lr_adam"] == 0.01
    assert row["config/optimizer"] == "adam" and row["config/suggested"] == CONFIG["suggested"]


def test_summarise_trial_of_a_diverged_and_of_an_empty_trial() -> None:
    nan = float("nan")
    row = summarise_trial("d", CONFIG, _epochs([0.4, nan]), None, ("diverged", "x"), "toon")
    assert row["val_acc_max"] == 0.4 and row["val_acc_avg"] == 0.4 and row["best_epoch"] == 1
    assert math.isnan(row["val_acc_last"]) and row["params"] == 0 and row["node"] == ""
    row = summarise_trial("e", CONFIG, _epochs([]), None, ("errored", "boom"), "toon")
    assert row["epochs"] == 0 and row["best_epoch"] == 0 and row["wall_s"] == 0.0
    assert all(math.isnan(row[c]) for c in ("val_acc_max", "val_acc_avg", "epoch_s_mean"))


def test_trials_parquet_has_one_writer_and_test_scores_touch_only_their_columns(tmp_path) -> None:
    study = tmp_path / "s"
    study.mkdir()
    rows = [
        summarise_trial(t, CONFIG, _epochs([0.5, 0.6]), {"params": 9}, ("finished", "x"), "toon")
        for t in ("a", "b")
    ]
    hps = {"lr_adam": {"kind": "float"}, "optimizer": {"kind": "categorical", "choices": ["adam"]}}
    write_trials(study, rows, config_dtypes(hps, [CONFIG]))
    before = read_table(study, "trials.parquet")
    scores = {"b": {"test_acc": 0.8, "test_macro_f1": 0.7, "test_acc_ci_low": 0.7}}
    scores["b"]["test_acc_ci_high"] = 0.9
    record_test_scores(study, scores)
    after = read_table(study, "trials.parquet")
    assert after.set_index("trial_id").loc["b", list(TEST_COLUMNS)].tolist() == [0.8, 0.7, 0.7, 0.9]
    assert after.loc[after["trial_id"] == "a", list(TEST_COLUMNS)].isna().all(axis=None)
    others = [c for c in before.columns if c not in TEST_COLUMNS]
    pd.testing.assert_frame_equal(after[others], before[others])
    assert (after["study"] == "s").all()
    with pytest.raises(ValueError, match=r"no trial\(s\) \['zz'\]"):
        record_test_scores(study, {"zz": scores["b"]})
