"""Demo: how deep a plain CNN must be, and which head, to read emotions off the embedded toon faces.

A few minutes on 2 CPU cores, no download. What it shows is measured (benchmarks/recipe.py):
at 64 px a 5- or 6-block CNN of width 16 learns the seven emotions to ~0.8 in 12 epochs, a
4-block one is far slower, and dense heads learn more slowly than a linear one. Small
GoogLeNets are not in it: their stem downsamples 8x, so at 64 px they stay at chance for longer
than a CPU demo lasts (recipe.py: GoogLeNet x0.25 0.14, x0.125 with the paper stem 0.27 after
5 epochs, while the 5-block CNN is at 0.6).
"""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces import _axes
from study.settings import SpaceSettings

SETTINGS = SpaceSettings(
    dataset="toon",
    description="vanilla CNN depth and head on embedded toon faces, 64 px, ASHA",
    # the first rung comes when a 5-block CNN is past 0.5 (epoch 4); one promotion to the end
    max_epochs=12,
    grace_period=4,
    reduction_factor=3,
    num_samples=10,
    image_size=64,
    top_k=3,
    roles=_axes.SCIENTIFIC,
    # the recipe's best (benchmarks/recipe.py) is tried first, so the study has a yardstick
    starting_points=(
        {
            "depth": 5,
            "head_layers": 0,
            "activation": "relu",
            "dropout": 0.0,
            "l2": 0.0,
            "lr": 2e-3,
            "aug_strength": 0.3,
        },
    ),
    smoke={"image_size": 32, "width": 8},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    # depth is the architecture that matters here: 3 blocks never leave chance at 64 px
    # (their receptive field misses the face), so the space starts at 4; width 16 learns as
    # fast as 32 per epoch at a third of the cost (recipe.py)
    cfg = _axes.vanilla_cnn(trial, width=16, batch_norm=True, depths=(4, 6))
    return cfg | {
        "optimizer": "adam",
        "batch_size": 16,
        "lr": trial.suggest_float("lr", 1e-3, 3e-3, log=True),
        "aug_strength": trial.suggest_float("aug_strength", 0.0, 0.5),
    }
