"""The seed's GoogLeNet-from-scratch variant axes on Manga Facial Expressions."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces import _axes
from study.settings import SpaceSettings

SETTINGS = SpaceSettings(
    dataset="manga",
    description="GoogLeNet from scratch: extra Inception 3/5, BN, head, activation, dropout, L2",
    max_epochs=60,
    grace_period=6,
    reduction_factor=3,
    num_samples=40,
    image_size=112,
    roles=_axes.SCIENTIFIC,
    # the seed's two named GoogLeNet models are tried first (raw suggest names)
    starting_points=(
        {
            "extra_inception_3": 0,
            "extra_inception_5": 0,
            "batch_norm": False,
            "head_layers": 1,
            "head_width_0": 64,
            "activation": "relu",
            "l2": 0.0,
        },
        {
            "extra_inception_3": 1,
            "extra_inception_5": 1,
            "batch_norm": False,
            "head_layers": 2,
            "head_width_0": 64,
            "head_width_1": 64,
            "activation": "relu",
            "l2": 0.0,
        },
    ),
    smoke={"image_size": 32, "width_mult": 0.125},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    # manga is small and imbalanced: class weights and early stopping as in the seed
    return {
        **_axes.googlenet(trial),
        **_axes.training(trial),
        "class_weights": True,
        "patience": 10,
    }
