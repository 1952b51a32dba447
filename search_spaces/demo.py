"""Demo: small GoogLeNet variants vs the vanilla CNN on the embedded toon faces (no download)."""

from __future__ import annotations

from typing import Any

import optuna

from search_spaces import _axes
from study.settings import SpaceSettings

SETTINGS = SpaceSettings(
    dataset="toon",
    description="GoogLeNet x0.25 variants vs vanilla CNN on embedded toon faces, 48 px, ASHA",
    # toon faces sit near chance for the first epochs, so the first rung comes after that
    max_epochs=12,
    grace_period=3,
    reduction_factor=3,
    num_samples=10,
    image_size=48,
    top_k=3,
    roles=_axes.SCIENTIFIC,
    smoke={"image_size": 32, "width_mult": 0.125, "width": 8},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    model = trial.suggest_categorical("model", ["googlenet", "vanilla_cnn"])
    # batch norm fixed on: without it these small nets sit at chance on toon for longer than a CPU
    # demo lasts (measured: BN CNN at 48 px 42 % val acc after 5 epochs, without BN 14 %)
    if model == "googlenet":
        cfg = _axes.googlenet(trial, width_mult=0.25, batch_norm=True)
    else:
        cfg = _axes.vanilla_cnn(trial, width=32, batch_norm=True)
    # a narrow nuisance range keeps a CPU demo of a few minutes meaningful
    cfg |= {
        "optimizer": "adam",
        "batch_size": 32,
        "lr": trial.suggest_float("lr", 1e-3, 5e-3, log=True),
        "aug_strength": trial.suggest_float("aug_strength", 0.0, 0.3),
    }
    return cfg
