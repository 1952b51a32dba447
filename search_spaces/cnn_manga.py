"""The seed's vanilla CNN baseline (LeakyReLU and batch-norm variants) on manga faces."""

from __future__ import annotations

from typing import Any

import optuna

from study.spaces.settings import SpaceSettings

from . import _axes

SETTINGS = SpaceSettings(
    dataset="manga",
    description="vanilla CNN from scratch: depth, BN, LeakyReLU, dense head, dropout, L2",
    max_epochs=60,
    grace_period=6,
    num_samples=40,
    image_size=112,
    roles=_axes.SCIENTIFIC,
    smoke={"image_size": 32, "width": 8},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    cfg = _axes.vanilla_cnn(trial, width=trial.suggest_categorical("width", [16, 32, 64]))
    return {**cfg, **_axes.training(trial), "class_weights": True, "patience": 10}
