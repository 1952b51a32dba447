"""The seed's vanilla CNN baseline (LeakyReLU, batch-norm variants) on FERG-DB, by-group split."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces import _axes
from study.spaces import SpaceSettings

SETTINGS = SpaceSettings(
    dataset="ferg",
    description="vanilla CNN from scratch: depth, BN, LeakyReLU, dense head, dropout, L2",
    max_epochs=30,
    grace_period=3,
    num_samples=40,
    image_size=112,
    roles=_axes.SCIENTIFIC,
    smoke={"image_size": 32, "width": 8},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    cfg = _axes.vanilla_cnn(trial, width=trial.suggest_categorical("width", [16, 32, 64]))
    return {**cfg, **_axes.training(trial), "patience": 5}
