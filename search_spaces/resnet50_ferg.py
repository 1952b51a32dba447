"""ImageNet-pretrained ResNet50 (timm), the seed's heads and a freeze strategy, on FERG-DB."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna

from . import resnet50_manga

SETTINGS = replace(resnet50_manga.SETTINGS, dataset="ferg", max_epochs=15, grace_period=2)


def space(trial: optuna.Trial) -> dict[str, Any]:
    # FERG is balanced: no class weights; it converges in fewer epochs
    cfg = resnet50_manga.space(trial)
    return {**cfg, "class_weights": False, "patience": 4}
