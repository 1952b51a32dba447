"""What Optuna is told (`StudySearch._tell`) and the study's settings winning over a space's
config in the searcher."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from study.spaces.constants import RUN_CONSTANTS, trial_constants
from study.spaces.loader import quiet_optuna
from study.spaces.settings import SpaceSettings, stopped_early

SETTINGS = SpaceSettings(dataset="toon", description="unit", max_epochs=4, grace_period=1)


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
