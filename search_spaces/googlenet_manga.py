"""The seed's GoogLeNet-from-scratch variant axes on Manga Facial Expressions."""

from __future__ import annotations

from typing import Any

import optuna

from study.spaces.settings import SpaceSettings

from . import _axes

# the seed's GoogLeNet head and settings, as raw suggest names
_SEED_HEAD = {
    "batch_norm": False,
    "head_width_0": 64,
    "activation": "relu",
    "dropout": 0.4,
    "l2": 0.0,
}

SETTINGS = SpaceSettings(
    dataset="manga",
    description="GoogLeNet from scratch: extra Inception 3/5, BN, head, activation, dropout, L2",
    max_epochs=60,
    grace_period=6,
    reduction_factor=3,
    num_samples=40,
    image_size=112,
    roles=_axes.SCIENTIFIC,
    # the seed's two named GoogLeNet models are tried first (raw suggest names), trained as the
    # seed trained them (Adam 1e-3, batch 32, its augmentation, no label smoothing, dropout 0.4)
    # except for what lets a BN-free GoogLeNet learn at all (_axes.BN_FREE: He init, zero-mean
    # kernels; with the seed's Glorot init they sit at ln 7)
    starting_points=(
        {
            **_axes.SEED_RECIPE,
            **_SEED_HEAD,
            "extra_inception_3": 0,
            "extra_inception_5": 0,
            "head_layers": 1,
        },
        {
            **_axes.SEED_RECIPE,
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
