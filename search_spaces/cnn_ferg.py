"""The seed's vanilla CNN baseline (LeakyReLU, batch-norm variants) on FERG-DB, by-group split."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna

from . import _axes, cnn_manga

SETTINGS = replace(cnn_manga.SETTINGS, dataset="ferg", max_epochs=30, grace_period=3)


def space(trial: optuna.Trial) -> dict[str, Any]:
    cfg = _axes.vanilla_cnn(trial, width=trial.suggest_categorical("width", [16, 32, 64]))
    return {**cfg, **_axes.training(trial), "patience": 5}
