"""The seed's GoogLeNet-from-scratch variant axes on FERG-DB (characters held out)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna

from . import _axes, googlenet_manga

# same axes and starting points as on manga; FERG is 150x larger, so fewer epochs and rungs sooner
SETTINGS = replace(
    googlenet_manga.SETTINGS, dataset="ferg", max_epochs=30, grace_period=3, num_samples=30
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    # FERG is balanced: no class weights; early stopping as in the seed
    return {**_axes.googlenet(trial), **_axes.training(trial), "patience": 5}
