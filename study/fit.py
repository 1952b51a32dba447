"""Training a config without Ray Tune: what a trial does, for a fixed number of epochs.

`setup_training` is the one place a model, its optimiser and its input pipeline are made from a
config (the Tune trainable uses it too); `fit` trains that for N epochs on given arrays and
returns the model, as confirmation runs, cross-validation folds and the refit need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from study.config import TrainConfig
from study.data import Augment, AugmentConfig, SplitArrays
from study.feed import BatchFit
from study.models import input_norm
from study.trainable import (
    TrialData,
    amp_dtype,
    build_model,
    class_weight_tensor,
    lr_factor,
    make_optimizer,
    pick_device,
    seed_everything,
    train_epoch,
)


@dataclass
class Training:
    """A config made real: model (warm-started if the config says so), optimiser, input pipeline."""

    cfg: TrainConfig
    model: nn.Module
    opt: torch.optim.Optimizer
    base_lrs: list[float]
    aug: Augment
    weight: torch.Tensor | None
    scaler: torch.amp.GradScaler
    params: int
    note: str = ""

    def set_epoch_lr(self, epoch: int) -> None:
        """The schedule's learning rate for a 0-based epoch."""
        for g, base in zip(self.opt.param_groups, self.base_lrs, strict=True):
            g["lr"] = base * lr_factor(self.cfg, epoch)


def setup_training(cfg: TrainConfig, data: TrialData, device: torch.device) -> Training:
    k = len(data.classes)
    model = build_model(cfg, k, device)
    note = ""
    if cfg.init_from:  # before the optimiser: it holds the trainable (unfrozen) tensors
        from study.transfer import warm_start

        note = warm_start(model, cfg.init_from, data.classes)
    opt = make_optimizer(cfg, model)
    # normalised as the backbone's weights expect (pretrained_cfg), not always ImageNet's
    aug = Augment(AugmentConfig.from_strength(cfg.aug_strength), *input_norm(model))
    weight = class_weight_tensor(data.train.labels, k, device) if cfg.class_weights else None
    return Training(
        cfg=cfg,
        model=model,
        opt=opt,
        base_lrs=[g["lr"] for g in opt.param_groups],
        aug=aug,
        weight=weight,
        scaler=torch.amp.GradScaler(enabled=amp_dtype(device) == torch.float16),
        params=sum(p.numel() for p in model.parameters()),
        note=note,
    )


@dataclass
class Fitted:
    model: nn.Module
    aug: Augment
    history: list[dict[str, float]] = field(default_factory=list)
    note: str = ""


def empty_split(like: SplitArrays) -> SplitArrays:
    return SplitArrays(like.images[:0], like.labels[:0], [])


def fit(
    config: dict[str, Any],
    train: SplitArrays,
    classes: list[str],
    epochs: int,
    device: torch.device | None = None,
) -> Fitted:
    """Train `config` on `train` for `epochs` epochs, as a trial would (same schedule over the
    config's max_epochs, same data order for a seed), with no validation and no early stopping:
    the epoch count was chosen already. Raises `study.trainable.Diverged` on a NaN loss."""
    cfg = TrainConfig.from_config(config)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = device or pick_device()
    gen = seed_everything(cfg.seed)
    data = TrialData(train=train, val=empty_split(train), classes=classes)
    t = setup_training(cfg, data, device)
    batch_fit = BatchFit(cfg.batch_size)
    history = []
    for epoch in range(epochs):
        gen.manual_seed(cfg.seed * 1_000 + epoch)  # as train_trial: order from (seed, epoch)
        t.set_epoch_lr(epoch)
        loss, acc, _ = train_epoch(
            t.model,
            t.opt,
            data,
            t.aug,
            cfg,
            gen,
            device,
            t.weight,
            t.scaler,
            epoch + 1,
            None,
            batch_fit,
        )
        history.append({"epoch": epoch + 1, "train_loss": loss, "train_acc": acc})
    return Fitted(t.model, t.aug, history, t.note)


def concat(*parts: SplitArrays) -> SplitArrays:
    """Several splits as one (train+val for folds and the refit)."""
    return SplitArrays(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        [path for p in parts for path in p.paths],
    )


def subset(arr: SplitArrays, idx: np.ndarray) -> SplitArrays:
    return SplitArrays(arr.images[idx], arr.labels[idx], [arr.paths[i] for i in idx])
