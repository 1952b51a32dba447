"""Training a config without Ray Tune for a fixed number of epochs: what a trial does, with no
validation and no early stopping, as confirmation runs and the refit need; and the split helpers
(train+val as one, a subset of rows) they and the cross-validation trial use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from study.data import Augment, SplitArrays
from study.data.store import empty_split
from study.training.config import TrainConfig
from study.training.steps import TrialData, pick_device
from study.training.trial import setup_trial


@dataclass
class Fitted:
    model: nn.Module
    aug: Augment
    history: list[dict[str, float]] = field(default_factory=list)
    note: str = ""


def fit(
    config: dict[str, Any],
    train: SplitArrays,
    classes: list[str],
    epochs: int,
    device: torch.device | None = None,
    interpolation: str = "bicubic",
) -> Fitted:
    """Train `config` on `train` for `epochs` epochs, as a trial would (same schedule over the
    config's max_epochs, same data order for a seed), with no validation and no early stopping:
    the epoch count was chosen already. `interpolation`: the filter `train` was resized with;
    it must be the model's (study.models.input_interpolation), else ValueError before training.
    Raises `study.training.steps.Diverged` on a NaN loss."""
    cfg = TrainConfig.from_config(config)
    data = TrialData(train, empty_split(train), classes, interpolation=interpolation)
    t = setup_trial(cfg, data, device or pick_device())
    history = []
    for epoch in range(epochs):
        loss, acc, _ = t.train(t.data, epoch)  # the batch order of run_trial's epoch
        history.append({"epoch": epoch + 1, "train_loss": loss, "train_acc": acc})
    return Fitted(t.model, t.aug, history, t.note)
