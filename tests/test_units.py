"""Fast unit tests (no Ray workers, each well under 5 s) of what slow studies otherwise reach only
through subprocesses: how a trial ended (`trial_status`), its trials.parquet row
(`summarise_trial`), what Optuna is told (`StudySearch._tell`), the declared hyperparameters
(`describe_hyperparameters`), the owners of trials.parquet and study.json, the settings a space
cannot override, and data sets found by file."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from study.results.study_json import RecordError, check_record, new_record, resumed_record
from study.results.tables import read_table
from study.results.trials import (
    TEST_COLUMNS,
    config_dtypes,
    record_test_scores,
    summarise_trial,
    trial_status,
    write_trials,
)
from study.run.preflight import UsageError, check_space_builds
from study.spaces.constants import RUN_CONSTANTS, trial_constants
from study.spaces.cover import describe_hyperparameters
from study.spaces.loader import Space, SpaceFunction, quiet_optuna
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


# ------------------------------------------------------------ StudySearch._tell


def _search(space, constants=None):
    from study.tuning.searcher import StudySearch

    with quiet_optuna():
        return StudySearch(
            space=space,
            metric="val_acc",
            mode="max",
            sampler=optuna.samplers.RandomSampler(seed=0),
            constants=constants or trial_constants(SETTINGS, 1),
            study_seed=2,
        )


def _lr_space(trial: optuna.Trial) -> dict:
    return {"model": "vanilla_cnn", "lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True)}


@pytest.mark.parametrize(
    ("result", "error", "state", "value", "reason"),
    [
        # finished: COMPLETE with the value of the weights it keeps (its best), not its last
        ({"val_acc": 0.6, "epoch": 3, "end_reason": "max_epochs", "best_value": 0.7}, False,
         TrialState.COMPLETE, 0.7, "max_epochs"),
        ({"val_acc": 0.6, "epoch": 3, "end_reason": "max_epochs"}, False,
         TrialState.COMPLETE, 0.6, "max_epochs"),
        # stopped by ASHA: a low-budget score, PRUNED (stock OptunaSearch says COMPLETE)
        ({"val_acc": 0.3, "epoch": 3}, False, TrialState.PRUNED, 0.3,  # (Optuna: its last)
         f"{stopped_early()} after epoch 3"),
        ({"val_acc": 0.3, "epoch": 3, "end_reason": "diverged", "error": "nan loss"}, False,
         TrialState.FAIL, None, "nan loss"),
        (None, True, TrialState.FAIL, None, "the trial raised an error"),
    ],
)  # fmt: skip
def test_optuna_is_told_how_each_trial_ended(result, error, state, value, reason) -> None:
    search = _search(_lr_space)
    config = search.suggest("r1")
    assert config["seed"] == 20_000 and config["suggested"] == {"lr": config["lr"]}
    search.on_trial_result("r1", {"val_acc": 0.5, "epoch": 1})
    search.on_trial_result("r1", {"val_acc": 0.55, "epoch": 2})
    search.on_trial_complete("r1", result, error)
    search.on_trial_complete("r1", result, error)  # told once: a second call changes nothing
    (t,) = search._ot_study.trials
    assert t.state == state and t.value == value
    assert t.user_attrs == {"ray_trial_id": "r1", "end_reason": reason}
    # every epoch reported by its own number, the last one from the final result too
    expected = {1: 0.5, 2: 0.55, **({3: result["val_acc"]} if result else {})}
    assert t.intermediate_values == expected


# ------------------------------------------- settings a space cannot override (#18 item 3)


def test_the_studys_settings_win_over_the_spaces_config() -> None:
    def space(trial: optuna.Trial) -> dict:
        return {**_lr_space(trial), "max_epochs": 99, "image_size": 224, "metric": "val_loss"}

    constants = {**trial_constants(SETTINGS, 2), "model": "inherited", "width": 8}
    config = _search(space, constants).suggest("r1")
    assert {k: config[k] for k in RUN_CONSTANTS} == trial_constants(SETTINGS, 2)
    # constants that are not settings (a warm start's architecture) are the space's to change
    assert config["model"] == "vanilla_cnn" and config["width"] == 8


def test_train_config_takes_every_image_size_the_settings_take() -> None:
    from study.spaces.settings import MIN_IMAGE_SIZE
    from study.training.config import TrainConfig

    small = SpaceSettings(dataset="toon", description="d", image_size=MIN_IMAGE_SIZE)
    cfg = TrainConfig.from_config({"model": "vanilla_cnn", **trial_constants(small, 1)})
    assert cfg.image_size == MIN_IMAGE_SIZE
    with pytest.raises(ValueError, match="config image_size=8"):
        TrainConfig.from_config({"model": "vanilla_cnn", "image_size": 8})


SPACE_FILE = """
from study.spaces.settings import SpaceSettings, stopped_early
SETTINGS = SpaceSettings(dataset="toon", description="clash", max_epochs=4, grace_period=1)
def space(trial):
    cfg = {{"model": "vanilla_cnn", "width": 8, "depth": 3, "head_dense": []}}
    if trial.suggest_categorical("long", [False, True]):  # only on one branch
        cfg[{key!r}] = {value!r}
    return cfg
"""


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_epochs", 50), ("image_size", 64), ("metric", "val_loss"), ("num_threads", 8)],
)
def test_a_space_returning_a_setting_fails_the_preflight_naming_file_and_key(
    key, value, tmp_path
) -> None:
    path = tmp_path / "clash.py"
    path.write_text(SPACE_FILE.format(key=key, value=value))
    fn = SpaceFunction(str(path))
    with pytest.raises(UsageError) as err:
        check_space_builds(fn, fn.space.settings, trial_constants(fn.space.settings, 1), 7)
    message = str(err.value)
    assert str(path) in message and repr(key) in message and "\n" not in message


# ----------------------------------------------------------- describe_hyperparameters


def test_describe_hyperparameters_finds_every_branch_with_its_role() -> None:
    def space(trial: optuna.Trial) -> dict:
        opt = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        lr = trial.suggest_float(f"lr_{opt}", 1e-4, 1e-1, log=True)
        layers = trial.suggest_int("head_layers", 0, 2)
        widths = [trial.suggest_int(f"width_{i}", 8, 64, step=8) for i in range(layers)]
        return {"model": "vanilla_cnn", "lr": lr, "head_dense": widths}

    settings = SpaceSettings(
        dataset="toon", description="d", roles={"optimizer": "scientific", "width_1": "fixed"}
    )
    hps = describe_hyperparameters(Space("s", space, settings, sys.modules[__name__]))
    assert set(hps) == {"optimizer", "lr_adam", "lr_sgd", "head_layers", "width_0", "width_1"}
    assert hps["optimizer"] == {
        "kind": "categorical",
        "choices": ["adam", "sgd"],
        "role": "scientific",
    }
    assert hps["lr_sgd"] == {
        "kind": "float",
        "low": 1e-4,
        "high": 0.1,
        "log": True,
        "role": "nuisance",
    }
    assert hps["head_layers"] == {
        "kind": "int",
        "low": 0,
        "high": 2,
        "log": False,
        "role": "nuisance",
    }
    assert hps["width_1"]["role"] == "fixed" and hps["width_1"]["kind"] == "int"
    # what study.json records passes the check its readers make
    check_record({"hyperparameters": hps}, "study.json")


# ----------------------------------------------------------------- study.json


class _Dataset:
    name, version, classes = "toon", "v1", ["a", "b"]
    manifest = {
        "split_rule": "stratified",
        "counts": {"train": 4, "val": 10},
        "class_counts": {"a": {"train": 2, "val": 8}, "b": {"train": 2, "val": 2}},
    }


def _record() -> dict:
    return new_record(
        name="x",
        space="demo",
        space_ref="demo",
        settings=SETTINGS,
        seed=0,
        argv=["--space", "demo", "--data-dir", "s3://KEY:SECRET@b/d"],
        dataset=_Dataset(),
        data_dir="s3://KEY:SECRET@b/d",
        run={"resources": {"cpu": 1.0, "gpu": 0.0}, "max_concurrent": None, "smoke_test": False},
        hyperparameters={"lr": {"kind": "float", "low": 0.1, "high": 1.0, "role": "nuisance"}},
        optuna_storage="sqlite:///x/optuna.db",
        set_values={},
        code={"git_commit": None, "versions": {}},
    )


def test_study_json_is_built_and_checked_by_one_module() -> None:
    meta = _record()
    assert check_record(json.loads(json.dumps(meta)), "study.json") == meta
    assert "SECRET" not in json.dumps(meta)  # never a credential
    assert meta["settings"]["max_epochs"] == 4 and meta["settings"]["smoke_test"] is False
    again = resumed_record(resumed_record(meta, "t1"), "t2")
    assert again["resumed"] == ["t1", "t2"] and again["started"] == meta["started"]
    bad = {**meta, "hyperparameters": {"lr": {"kind": "float", "role": "main"}}}
    with pytest.raises(RecordError, match=r"^s/study.json: hyperparameters.lr.role: expected"):
        check_record(bad, "s/study.json")
    with pytest.raises(RecordError, match="settings.grace_period must be a positive integer"):
        check_record({**meta, "settings": {"grace_period": 0}}, "s/study.json")


def test_resume_and_report_reject_the_same_bad_record(tmp_path) -> None:
    from study.report import ReportInputError, load_study
    from study.run.preflight import study_record

    study = tmp_path / "s" / "x"
    study.mkdir(parents=True)
    meta = _record()
    meta["hyperparameters"]["lr"]["kind"] = "number"
    (study / "study.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="hyperparameters.lr.kind: expected one of") as resume:
        study_record(str(tmp_path / "s"), "x", True)
    with pytest.raises(ReportInputError) as report:
        load_study(str(study))
    assert str(resume.value) == str(report.value)


# ------------------------------------------------------------ data sets found by file


def test_a_new_data_set_is_one_new_file(tmp_path, monkeypatch) -> None:
    from study.data import prepare, registry

    # a package of data-set files in place of study/data/sets (one file, registering itself)
    (tmp_path / "my_sets").mkdir()
    (tmp_path / "my_sets" / "__init__.py").write_text("")
    (tmp_path / "my_sets" / "shapes.py").write_text(
        "from study.data.registry import DatasetSpec, register_dataset\n"
        "from study.data.sources import read_class_folders\n"
        "register_dataset(DatasetSpec(name='shapes', description='mine',\n"
        "    reader=lambda src, seed: read_class_folders(src, ('a', 'b'))))\n"
    )
    (tmp_path / "my_sets" / "_helpers.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_found", set())
    monkeypatch.setattr(registry, "SETS", "my_sets")
    assert "shapes" in registry.list_datasets()
    rng = np.random.default_rng(0)
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "src" / cls / f"{i}.png")
    result = prepare("shapes", source=str(tmp_path / "src"), data_dir=tmp_path / "data", seed=0)
    assert sorted(result.manifest["classes"]) == ["a", "b"]


def test_the_shipped_data_sets_are_found_by_file() -> None:
    from study.data import get_dataset, list_datasets

    assert {"manga", "ferg", "toon", "folder"} <= set(list_datasets())
    assert get_dataset("toon").classes == get_dataset("ferg").classes  # cross-style needs it
    assert get_dataset("ferg").default_split == "by-group"


def test_the_record_carries_what_guessing_scores_on_an_imbalanced_val_split() -> None:
    """study.json keeps the per-class counts, so the report's "at chance" verdict compares with
    the majority class (0.8 here), not with 1 / classes (0.5)."""
    from study.report.compute import baseline

    base = baseline(_record())
    assert base is not None and base.p0 == pytest.approx(0.8)
