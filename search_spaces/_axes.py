"""Axes shared by several spaces (define-by-run pieces: only suggest_* calls and constants)."""

from __future__ import annotations

from typing import Any

import optuna

# the seed study's knobs, by tuning-playbook role; names not listed default to "nuisance"
SCIENTIFIC = {
    "model": "scientific",
    "depth": "scientific",
    "width": "scientific",
    "extra_inception_3": "scientific",
    "extra_inception_5": "scientific",
    "batch_norm": "scientific",
    "head_layers": "scientific",
    "activation": "scientific",
    "head_output": "scientific",
    "freeze": "scientific",
    "variant": "scientific",
}


# the seed's training recipe as raw suggest names of `training` (a starting point's nuisance part)
SEED_RECIPE = {
    "optimizer": "adam",
    "lr_adam": 1e-3,
    "batch_size": 32,
    "aug_strength": 0.5,
    "label_smoothing": 0.0,
}


# Without batch norm the seed's GoogLeNets sit at ln 7 with the seed's Glorot init: zero-mean
# kernels let the plain one learn, He init as well the deeper one (extra Inception blocks);
# measured in benchmarks/presets_manga.py. Applied to every BN-free GoogLeNet trial.
BN_FREE = {"init": "kaiming", "zero_mean_kernels": True}


def training(
    trial: optuna.Trial,
    batch_sizes=(16, 32, 64),
    optimizers=("adam", "adamw", "sgd"),
    adam_lr: tuple[float, float] = (1e-4, 3e-3),
) -> dict[str, Any]:
    """Optimiser, learning rate, batch size, augmentation and label smoothing: nuisance knobs."""
    opt = trial.suggest_categorical("optimizer", list(optimizers))
    lo, hi = (1e-3, 1e-1) if opt == "sgd" else adam_lr
    return {
        "optimizer": opt,
        "lr": trial.suggest_float(f"lr_{opt}", lo, hi, log=True),
        "weight_decay": 0.05 if opt == "adamw" else 0.0,
        "batch_size": trial.suggest_categorical("batch_size", list(batch_sizes)),
        "aug_strength": trial.suggest_float("aug_strength", 0.0, 1.0),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
    }


def head(trial: optuna.Trial, max_layers: int = 2) -> dict[str, Any]:
    """The seed's dense head: 0..max_layers dense layers, a width per layer, activation, dropout."""
    n = trial.suggest_int("head_layers", 0, max_layers)
    return {
        "head_dense": [
            trial.suggest_categorical(f"head_width_{i}", [32, 64, 128]) for i in range(n)
        ],
        "activation": trial.suggest_categorical("activation", ["relu", "leaky_relu"]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.6),
    }


def googlenet(
    trial: optuna.Trial, width_mult: float = 1.0, batch_norm: bool | None = None
) -> dict[str, Any]:
    """The seed's GoogLeNet variant axes: extra Inception blocks in stages 3/5, BN, head, L2."""
    bn = _batch_norm(trial, batch_norm)
    return {
        "model": "googlenet",
        "width_mult": width_mult,
        "extra_inception_3": trial.suggest_int("extra_inception_3", 0, 1),
        "extra_inception_5": trial.suggest_int("extra_inception_5", 0, 1),
        "batch_norm": bn,
        "l2": trial.suggest_categorical("l2", [0.0, 1e-5, 1e-4]),
        **head(trial),
        **({} if bn else BN_FREE),
    }


def vanilla_cnn(
    trial: optuna.Trial, width: int = 32, batch_norm: bool | None = None
) -> dict[str, Any]:
    return {
        "model": "vanilla_cnn",
        "depth": trial.suggest_int("depth", 3, 5),
        "width": width,
        "batch_norm": _batch_norm(trial, batch_norm),
        "l2": trial.suggest_categorical("l2", [0.0, 1e-5, 1e-4]),
        **head(trial),
    }


def _batch_norm(trial: optuna.Trial, fixed: bool | None) -> bool:
    """A constant when the space fixes it (no phantom parameter in Optuna), else a choice."""
    if fixed is not None:
        return fixed
    return trial.suggest_categorical("batch_norm", [False, True])
