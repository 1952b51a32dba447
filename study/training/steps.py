"""One trial's steps, Ray-free and torch-only: the model and optimiser a config names, the
learning-rate schedule, the loss, a training step in micro-batches, prediction and validation.
`study.training.trial` builds a trial and its training epoch (`train_epoch`, which takes the
trial's `Training`) from these; `study.evaluate` scores with `predict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from study.data import Augment, SplitArrays
from study.data.augment import AugmentDraw
from study.models import create_model, input_interpolation, l2_penalty, param_groups
from study.results.statistics import macro_f1
from study.training.config import TrainConfig
from study.training.feed import batches, prefetched


@dataclass(frozen=True)
class TrialData:
    """What every trial shares: train and val only (the test split is not even in here)."""

    train: SplitArrays
    val: SplitArrays
    classes: list[str]
    # cv_folds tuning: `train` is train+val and this its fold ids (study.training.cv_trial); else
    # None
    folds: np.ndarray | None = None
    # the resize filter the images went through, and the same images through the other filters
    # the space's models expect (study.run decodes them once, before tuning): a backbone trains
    # on the pixels its pretrained_cfg says (study.models.input_interpolation)
    interpolation: str = "bicubic"
    resized: dict[str, TrialData] = field(default_factory=dict)

    def for_model(self, model: nn.Module, name: str = "the model") -> TrialData:
        """This data, or its copy resized with the filter `model` (called `name`) expects."""
        want = input_interpolation(model)
        if want == self.interpolation:
            return self
        if want not in self.resized:
            held = ", ".join([self.interpolation, *self.resized])
            raise ValueError(
                f"{name} expects inputs resized with {want!r}; the trial data holds "
                f"{held} only (decode train and val with load_split(..., {want!r}) into resized)"
            )
        return self.resized[want]


class Diverged(RuntimeError):
    pass


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the trial keeps weights and inputs channels-last (cfg.channels_last; "auto": on
    CUDA)."""
    return device.type == "cuda" if cfg.channels_last == "auto" else cfg.channels_last


def build_model(cfg: TrainConfig, num_classes: int, device: torch.device) -> nn.Module:
    model = create_model(cfg.model, num_classes, **cfg.model_options).to(device)
    if channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    return model


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.lr, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(groups, lr=cfg.lr)


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Multiplier of the base learning rate for a 0-based epoch (linear warm-up, then schedule)."""
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.lr_schedule == "cosine":
        t = (epoch - cfg.warmup_epochs) / max(1, cfg.max_epochs - cfg.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.lr_schedule == "step":
        return 0.1 ** (epoch // max(1, cfg.max_epochs // 3))
    return 1.0


def class_weight_tensor(labels: np.ndarray, k: int, device: torch.device) -> torch.Tensor:
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32, device=device)


def loss_fn(
    model: nn.Module,
    logits: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    weight: torch.Tensor | None,
) -> torch.Tensor:
    k = logits.shape[1]
    if getattr(model, "head_output", "softmax") == "sigmoid":  # the seed's one-vs-rest head
        target = F.one_hot(y, k).float() * (1 - cfg.label_smoothing) + cfg.label_smoothing / k
        per = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").sum(1)
        return (per * weight[y]).mean() if weight is not None else per.mean()
    return F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=cfg.label_smoothing)


@torch.no_grad()
def predict(
    model: nn.Module, arr: SplitArrays, aug: Augment, device: torch.device, batch_size: int = 128
) -> np.ndarray:
    """Class probabilities for every image of a split, in order."""
    model.eval()
    sig = getattr(model, "head_output", "softmax") == "sigmoid"
    out = []
    for _, x, _ in prefetched(arr, batches(len(arr.labels), batch_size, None), device):
        with autocast(device):
            logits = model(aug(x, train=False))
        p = torch.sigmoid(logits.float()) if sig else logits.float().softmax(1)
        out.append(p / p.sum(1, keepdim=True))
    # one copy to the host at the end: a .cpu() per batch would wait for the GPU each time
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, 0), np.float32)


@lru_cache(maxsize=4)
def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU runs it natively (compute capability 8.0, Ampere, and later), else fp16
    with a GradScaler; on older cards is_bf16_supported() says yes because bf16 can be emulated,
    slowly (and cuDNN has no bf16 convolutions there)."""
    if device.type != "cuda":
        return None
    native = torch.cuda.get_device_capability(device) >= (8, 0)
    return torch.bfloat16 if native else torch.float16


def autocast(device: torch.device):
    dtype = amp_dtype(device)
    if dtype is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=dtype)


def train_step(
    model, x, y, aug: Augment, draw: AugmentDraw, cfg: TrainConfig, weight, scaler, micro, fault
) -> torch.Tensor:
    """Augment, forward and backward uint8 `x` in micro-batches; returns [mean loss, correct].

    Each micro-batch's mean loss is scaled by its share of the batch (its share of the class
    weight for weighted cross-entropy), so the summed gradients equal the whole batch's; and it
    is augmented with its rows of the batch's draw, so it sees the same images too."""
    weighted = weight is not None and getattr(model, "head_output", "softmax") != "sigmoid"
    # once per step (with the first micro-batch's backward), not once per micro-batch
    penalty = cfg.l2 * l2_penalty(model) if cfg.l2 else None
    total_w = weight[y].sum() if weighted else None
    batch_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    n = len(y)
    starts = list(range(0, n, micro))
    if len(starts) > 1 and n - starts[-1] == 1:  # no micro-batch of one image (batch norm)
        starts.pop()
    for start, stop in zip(starts, [*starts[1:], n], strict=True):
        rows = slice(start, stop)
        xs, ys = aug(x[rows], train=True, draw=draw[rows]), y[rows]
        if channels_last(cfg, xs.device):
            xs = xs.contiguous(memory_format=torch.channels_last)
        override = fault(len(ys)) if fault is not None else None
        with autocast(x.device):
            logits = model(xs)
            loss = loss_fn(model, logits, ys, cfg, weight)
            for aux in getattr(model, "aux_outputs", []):
                loss = loss + model.aux_weight * loss_fn(model, aux, ys, cfg, weight)
        if override is not None:
            loss = loss + override
        share = weight[ys].sum() / total_w if weighted else len(ys) / n
        loss = loss * share
        if penalty is not None and start == 0:
            loss = loss + penalty
        scaler.scale(loss).backward()
        batch_loss += loss.detach()
        correct += (logits.argmax(1) == ys).sum()
    return torch.stack([batch_loss, correct.to(batch_loss.dtype)])


def evaluate_val(model, data: TrialData, aug: Augment, device, batch_size: int = 128):
    probs = predict(model, data.val, aug, device, batch_size)
    y = data.val.labels
    pred = probs.argmax(1)
    logp = torch.log(torch.from_numpy(probs).clamp_min(1e-12))
    loss = float(F.nll_loss(logp, torch.from_numpy(y)))
    return loss, float((pred == y).mean()), macro_f1(y, pred, len(data.classes))


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # torch.compile wraps the module
