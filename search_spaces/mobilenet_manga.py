"""Transfer learning that runs offline: MobileNetV1 x0.25 with its real local ImageNet weights."""

from __future__ import annotations

from typing import Any

import optuna

from study.spaces.settings import SpaceSettings

from . import _axes

SETTINGS = SpaceSettings(
    dataset="manga",
    description="MobileNetV1 x0.25, local ImageNet weights: heads, freezing, backbone LR",
    max_epochs=30,
    grace_period=3,
    num_samples=24,
    image_size=128,
    roles=_axes.SCIENTIFIC,
    smoke={"image_size": 32},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "model": "mobilenet_v1_025",
        "pretrained": True,
        "freeze": trial.suggest_categorical("freeze", ["none", "backbone", 1]),
        "backbone_lr_mult": trial.suggest_float("backbone_lr_mult", 0.01, 1.0, log=True),
        "head_output": "softmax",
        **_axes.head(trial),
        **_axes.training(trial),
        "class_weights": True,
        "patience": 8,
    }
