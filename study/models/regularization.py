"""What the trainer needs beyond the model: the seed's explicit L2 penalty, optimiser parameter
groups (backbone learning-rate multiplier, decoupled weight decay) and the Grad-CAM layer.

Two different regularisers, both exposed: ``l2_penalty`` is Keras' ``kernel_regularizer``
(``loss += l2 * Σw²`` over conv/dense kernels, so it flows through the gradient and adaptive
optimisers rescale it), while ``weight_decay`` in :func:`param_groups` is the optimiser's
decoupled decay (AdamW), applied to every non-bias, non-norm tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd


def l2_penalty(model: nn.Module) -> Tensor:
    """Σ w² over the trainable kernels of conv and linear layers (no biases, no norm
    parameters); the trainer multiplies it by its ``l2`` coefficient."""
    kernels = [
        m.weight
        for m in model.modules()
        if isinstance(m, _ConvNd | nn.Linear) and m.weight.requires_grad
    ]
    if not kernels:
        p = next(model.parameters(), None)
        return torch.zeros((), device=None if p is None else p.device)
    return torch.stack([w.pow(2).sum() for w in kernels]).sum()


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """timm.optim.param_groups_weight_decay's split, in its order: trainable tensors with <= 1
    dimension or named *.bias without decay, the rest with `weight_decay`. Written out because
    importing timm costs every trial worker ~2.6 s (see layers.IMAGENET_DEFAULT_MEAN);
    tests/models/test_models.py checks it against timm's on every registered family."""
    no_decay, decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser parameter groups: backbone parameters at ``lr * model.backbone_lr_mult``, the rest
    (head, auxiliary heads) at ``lr``; frozen parameters left out; no weight decay on biases and
    normalisation parameters (timm's rule: tensors with ≤ 1 dimension)."""
    mult = float(getattr(model, "backbone_lr_mult", 1.0))
    backbone = getattr(model, "backbone", None)
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: list[dict[str, Any]] = []
    for group in decay_groups(model, weight_decay):
        decay = "decay" if group["weight_decay"] else "no_decay"
        for part, part_lr in (("backbone", lr * mult), ("head", lr)):
            params = [p for p in group["params"] if (id(p) in in_backbone) == (part == "backbone")]
            if params:
                groups.append(
                    {
                        "params": params,
                        "lr": part_lr,
                        "weight_decay": group["weight_decay"],
                        "name": f"{part}/{decay}",
                    }
                )
    return groups


def gradcam_layer(model: nn.Module) -> nn.Module:
    """The last spatial block of the backbone, whose output Grad-CAM hooks."""
    target = getattr(model, "gradcam_target", "")
    if not target:
        raise ValueError(
            f"{type(model).__name__} names no Grad-CAM layer (models from create_model do, "
            "except timm backbones without feature_info)"
        )
    return model.backbone.get_submodule(target)
