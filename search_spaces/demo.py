"""Demo: how deep must a plain CNN be to read emotions off the embedded toon faces? A few minutes
on 2 CPU cores, no download.

Measured (64 px, width 16, BN, linear head, Adam 2e-3, batch 16, augmentation 0.3; val accuracy
after epochs 1-4, chance 0.143): 4 blocks 0.14 0.14 0.20 0.26 (benchmarks/recipe.py, 10-epoch
cosine), 5 blocks 0.24 0.35 0.48 0.61 (a 12-epoch demo trial, 0.79 after 8). Depth is the
choice that matters, and ASHA's rung at epoch 4 can already tell the depths apart. Dense heads
learn far more slowly on this budget (5 blocks with Dense 64 and dropout 0.3: 0.35 after 4
epochs; Dense 128-32: 0.28), so the head is fixed linear. Small GoogLeNets are not in it: their
stem downsamples 8x, and at 64 px they stay at chance longer than a CPU demo lasts.
"""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces import _axes
from study.settings import SpaceSettings

SETTINGS = SpaceSettings(
    dataset="toon",
    description="plain CNN depth (4-6 blocks) on embedded toon faces, 64 px, ASHA",
    # one rung at epoch 4 (a 5-block net is past 0.5 there, a 4-block one near chance); the
    # top third trains on to 12. Measured (benchmarks/results/demo.txt): 48 epochs of 9-12 CPU
    # seconds, best test 0.766, median best val 0.411, spread 0.571
    max_epochs=16,
    grace_period=4,
    reduction_factor=3,
    num_samples=8,
    image_size=64,
    top_k=3,
    roles=_axes.SCIENTIFIC,
    # the recipe's best (benchmarks/recipe.py) is tried first, so the study has a yardstick
    starting_points=({"depth": 5, "dropout": 0.0, "lr": 3e-3, "aug_strength": 0.15},),
    smoke={"image_size": 32, "width": 8},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    # width 16 learns as fast per epoch as 32 at a third of the cost; batch 16: twice the steps
    # per epoch of 32, which a 12-epoch budget needs
    return {
        "model": "vanilla_cnn",
        "depth": trial.suggest_int("depth", 4, 6),
        "width": 16,
        "batch_norm": True,
        "head_dense": [],
        "activation": "relu",
        "dropout": trial.suggest_float("dropout", 0.0, 0.2),
        "optimizer": "adam",
        "batch_size": 16,
        "lr": trial.suggest_float("lr", 1.5e-3, 3e-3, log=True),
        "aug_strength": trial.suggest_float("aug_strength", 0.1, 0.4),
        "warmup_epochs": 1,
        "label_smoothing": 0.1,
        "channels_last": True,
    }
