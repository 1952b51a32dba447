"""ImageNet-pretrained ResNet50 (timm) with the seed's heads and a freeze strategy, on manga.

Pretrained weights come from timm's usual source (downloaded once into its cache on your machine).
"""

from __future__ import annotations

from typing import Any

import optuna

from study.spaces.settings import SpaceSettings

from . import _axes

SETTINGS = SpaceSettings(
    dataset="manga",
    description="pretrained ResNet50: heads (dense+sigmoid / 2x64 LeakyReLU softmax), freezing",
    max_epochs=30,
    grace_period=3,
    num_samples=24,
    image_size=224,
    roles=_axes.SCIENTIFIC,
    starting_points=(  # the seed's two ResNet50 heads
        {"head_output": "sigmoid", "head_layers": 1, "head_width_0": 64, "activation": "relu"},
        {
            "head_output": "softmax",
            "head_layers": 2,
            "head_width_0": 64,
            "head_width_1": 64,
            "activation": "leaky_relu",
        },
    ),
    # smoke: an untrained tiny timm net at 32 px exercises the same code path offline
    smoke={"image_size": 32, "model": "timm/resnet18", "pretrained": False},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "model": "timm/resnet50",
        "pretrained": True,
        "head_output": trial.suggest_categorical("head_output", ["softmax", "sigmoid"]),
        "freeze": trial.suggest_categorical("freeze", ["none", "backbone", 1, 2]),
        "backbone_lr_mult": trial.suggest_float("backbone_lr_mult", 0.01, 1.0, log=True),
        **_axes.head(trial),
        **_axes.training(trial, batch_sizes=(16, 32)),
        "class_weights": True,
        "patience": 8,
    }
