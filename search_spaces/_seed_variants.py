"""The seed study's named variants, as configs (its results table, one row each)."""

from __future__ import annotations

from typing import Any

from ._axes import BN_FREE

# width and width_mult at the models' defaults, named so that SMOKE's shrink them (a smoke test
# changes only the keys a config holds)
_CNN = {"model": "vanilla_cnn", "width": 32, "head_dense": [64], "dropout": 0.4}
_GOOGLENET_SEED = {"model": "googlenet", "width_mult": 1.0, "head_dense": [64], "dropout": 0.4}
# BN-free GoogLeNets as googlenet_manga trains them (_axes.BN_FREE): as the seed built them,
# they sit at ln 7
_GOOGLENET = {**_GOOGLENET_SEED, **BN_FREE}
_RESNET = {"model": "timm/resnet50", "pretrained": True, "freeze": "backbone"}

VARIANTS: dict[str, dict[str, Any]] = {
    "cnn": _CNN,
    "cnn_leaky_relu": {**_CNN, "activation": "leaky_relu"},
    "cnn_batch_norm": {**_CNN, "batch_norm": True},
    "googlenet": _GOOGLENET,
    "googlenet_extra_inception_3_5": {
        **_GOOGLENET,
        "extra_inception_3": 1,
        "extra_inception_5": 1,
        "head_dense": [64, 64],
    },
    "googlenet_batch_norm": {**_GOOGLENET_SEED, "batch_norm": True},
    "googlenet_2_dense_64": {**_GOOGLENET, "head_dense": [64, 64]},
    "googlenet_leaky_relu": {**_GOOGLENET, "activation": "leaky_relu"},
    "googlenet_l2": {**_GOOGLENET, "l2": 1e-4},
    "resnet50_dense_sigmoid": {**_RESNET, "head_dense": [], "head_output": "sigmoid"},
    "resnet50_2_dense_64_leaky_softmax": {
        **_RESNET,
        "head_dense": [64, 64],
        "activation": "leaky_relu",
        "head_output": "softmax",
    },
}

# the seed trained every variant the same way: Adam, augmentation, early stopping
RECIPE: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 32,
    "aug_strength": 0.5,
    "lr_schedule": "constant",
    "patience": 5,
}

SMOKE = {"image_size": 32, "width_mult": 0.125, "width": 8, "pretrained": False}
