"""The seed's GoogLeNet-from-scratch variant axes on Manga Facial Expressions."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces import _axes
from study.settings import SpaceSettings

# the seed's GoogLeNet head and settings, as raw suggest names
_SEED_HEAD = {
    "batch_norm": False,
    "head_width_0": 64,
    "activation": "relu",
    "dropout": 0.4,
    "l2": 0.0,
}

# Why not the seed's Adam 1e-3 and batch 32 (issue #13, benchmarks/presets_manga.py): without
# batch norm, every unit's inputs are post-ReLU, all positive and nearly the same for every image
# (pooled features 7e-3 on average, 2e-3 apart between images at Glorot init), so each Adam step,
# lr per weight whatever the gradient's size, moves all of a unit's weights the same way and its
# pre-activation by about lr x fan_in x the mean input, for every image alike. At 1e-3 that is
# more than the between-image spread per step: in the first epoch (8 steps) the pooled features'
# spread falls 10x, the head's dead ReLUs go from 39 % to 70 % and the output stops depending on
# the input (train loss ln 7 for 10 epochs, at any init). At 1e-4 (the space's lowest Adam rate)
# the features stay alive and the network leaves the flat start; batches of 16 give it twice
# the steps (16 per epoch on manga's 257 train images instead of 8).
_PRESET_RECIPE = {**_axes.SEED_RECIPE, "lr_adam": 1e-4, "batch_size": 16}

SETTINGS = SpaceSettings(
    dataset="manga",
    description="GoogLeNet from scratch: extra Inception 3/5, BN, head, activation, dropout, L2",
    max_epochs=60,
    grace_period=6,
    reduction_factor=3,
    num_samples=40,
    image_size=112,
    roles=_axes.SCIENTIFIC,
    # the seed's two named GoogLeNet models are tried first (raw suggest names): its architecture,
    # Glorot init (the model's default), augmentation, no label smoothing, dropout 0.4, trained
    # with Adam at 1e-4 in batches of 16 instead of the seed's 1e-3 and 32 (_PRESET_RECIPE)
    starting_points=(
        {
            **_PRESET_RECIPE,
            **_SEED_HEAD,
            "extra_inception_3": 0,
            "extra_inception_5": 0,
            "head_layers": 1,
        },
        {
            **_PRESET_RECIPE,
            **_SEED_HEAD,
            "extra_inception_3": 1,
            "extra_inception_5": 1,
            "head_layers": 2,
            "head_width_1": 64,
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
