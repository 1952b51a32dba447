"""Transfer across drawing styles: fine-tune on manga from a toon study's best model.

    python -m study.run --space demo                                    # the toon source study
    python -m study.run --space manga_from_toon --init-from studies/<demo study>

The network (model and its options) is the source trial's: `--init-from` makes it the config's
default and every trial starts from its weights, with a new 7-class head (manga's classes are not
FERG's). Tuned here: how much of it to freeze, the backbone's learning-rate multiplier, the head's
dropout and the usual training knobs. The FERG -> manga version is the same space with a FERG
study as the source (`--init-from studies/<googlenet_ferg study>`).
"""

from __future__ import annotations

from typing import Any

import optuna

from study.spaces.settings import SpaceSettings

from . import _axes

# study.run refuses this space without --init-from, naming what it needs
NEEDS_INIT_FROM = "a toon study, e.g. of --space demo; or a FERG study for FERG -> manga"

SETTINGS = SpaceSettings(
    dataset="manga",
    description="toon -> manga: fine-tune a toon study's best model (needs --init-from)",
    max_epochs=30,
    grace_period=3,
    num_samples=16,
    image_size=64,
    top_k=3,
    roles={**_axes.SCIENTIFIC, "backbone_lr_mult": "scientific"},
    smoke={"image_size": 32},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        # "none": fine-tune everything; "backbone": a new head on fixed toon features; 1: the
        # last stage too
        "freeze": trial.suggest_categorical("freeze", ["none", "backbone", 1]),
        "backbone_lr_mult": trial.suggest_float("backbone_lr_mult", 0.03, 1.0, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.6),
        **_axes.training(trial),
        "class_weights": True,  # manga is imbalanced (shock 82, pleased 30 of 365)
        "patience": 8,
    }
