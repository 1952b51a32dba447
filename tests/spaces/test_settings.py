"""Settings a space cannot override, image sizes the settings and the trial config agree on, and
the declared hyperparameters of every branch (`describe_hyperparameters`)."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from study.results.study_json import check_record
from study.run.preflight import UsageError, check_space_builds
from study.spaces.constants import trial_constants
from study.spaces.cover import describe_hyperparameters
from study.spaces.loader import Space, SpaceFunction
from study.spaces.settings import SpaceSettings

SETTINGS = SpaceSettings(dataset="toon", description="unit", max_epochs=4, grace_period=1)


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
    path, message = _preflight_error(tmp_path, SPACE_FILE.format(key=key, value=value), UsageError)
    assert str(path) in message and repr(key) in message


def _preflight_error(tmp_path: Path, text: str, kind: type[Exception]) -> tuple[Path, str]:
    """The space file `text`'s path and the one-line `kind` check_space_builds raises on it."""
    path = tmp_path / "space.py"
    path.write_text(text)
    fn = SpaceFunction(str(path))
    with pytest.raises(kind) as err:
        check_space_builds(fn, fn.space.settings, trial_constants(fn.space.settings, 1), 7)
    assert "\n" not in str(err.value)
    return path, str(err.value)


NUMBER_SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="numbers", max_epochs=4, grace_period=1)
def space(trial):
    cfg = {{"model": "vanilla_cnn", "width": 8, "depth": 3, "head_dense": []}}
    if trial.suggest_categorical("odd", [False, True]):  # only on one branch
        cfg[{key!r}] = float({value!r})
    return cfg
"""


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("lr", "inf", "expected a finite number > 0"),
        ("weight_decay", "nan", "expected a finite number >= 0"),
        ("momentum", "1.5", "expected a value in [0, 1)"),
        ("aug_strength", "-0.5", "expected a value in [0, 1]"),
    ],
)
def test_a_number_a_trial_cannot_train_with_fails_the_preflight(
    key, value, expected, tmp_path
) -> None:
    """lr=inf once passed the preflight and reached every trial (#27 item 10)."""
    path, message = _preflight_error(
        tmp_path, NUMBER_SPACE.format(key=key, value=value), ValueError
    )
    assert str(path) in message and f"config {key}={float(value)!r}: {expected}" in message


@pytest.mark.parametrize("folds", [float("inf"), 2.5, True])
def test_settings_refuse_a_fold_count_that_is_no_integer(folds) -> None:
    with pytest.raises(ValueError, match=rf"SpaceSettings.cv_folds={folds!r}: expected an integer"):
        SpaceSettings(dataset="toon", description="d", cv_folds=folds)


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
