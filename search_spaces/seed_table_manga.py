"""The seed study's named variants as a fixed grid on manga, to reproduce its results table."""

from __future__ import annotations

from typing import Any

import optuna

from study.spaces.settings import SpaceSettings

from ._axes import SCIENTIFIC
from ._seed_variants import RECIPE, SMOKE, VARIANTS

GRID = {"variant": list(VARIANTS)}  # the grid sampler runs each variant exactly once

SETTINGS = SpaceSettings(
    dataset="manga",
    description="the seed's named variants (CNN, GoogLeNet, ResNet50 heads), one trial each",
    max_epochs=50,
    num_samples=len(VARIANTS),
    image_size=112,
    sampler="grid",
    scheduler="fifo",  # a table of full runs: no early stopping across variants
    top_k=len(VARIANTS),
    roles=SCIENTIFIC,
    smoke=SMOKE,
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    variant = trial.suggest_categorical("variant", GRID["variant"])
    return {**RECIPE, **VARIANTS[variant], "class_weights": True}
