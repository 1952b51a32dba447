"""Building blocks shared by every family: activations from strings, conv blocks, the seed's head.

Every model is a :class:`Classifier` (backbone → pooled features → head) so that freezing,
parameter groups, the L2 penalty and Grad-CAM treat all families alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

# the names, checked by options without torch, live in the registry
from .registry import DEFAULT_INTERPOLATION, INITS, require

# timm.data's ImageNet statistics, written out: this module (every plain CNN and GoogLeNet, in
# every trial worker and driver) must not import timm, whose import pulls in torchvision and
# costs about as much again as torch to import (tests/models/test_timm_free.py keeps it out).
# timm is imported only by the timm backbones (backbones.py) and for decoupled weight decay.
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

# Keras' LeakyReLU layer defaults to a slope of 0.3 (PyTorch: 0.01); the seed study is Keras,
# so "leaky_relu" means the seed's layer. The rest are the classes timm's get_act_layer returns
# for these names (torch's own; tests/models/test_models.py checks they stay the same).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": partial(nn.LeakyReLU, negative_slope=0.3),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def act_layer(name: str) -> Callable[[], nn.Module]:
    """The activation class for ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def scale(channels: int, width_mult: float) -> int:
    """A channel count scaled by ``width_mult``, never below 1."""
    return max(1, round(channels * width_mult))


def conv_block(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, batch_norm: bool, activation: str
) -> nn.Module:
    """Conv → (BatchNorm) → activation with 'same' padding; the conv keeps its bias only without
    BN (as in the seed's Keras ``Conv2D``), because BN's shift makes a bias redundant.

    Built by hand rather than with timm's ``ConvNormAct``: that one drops the activation together
    with the norm (``apply_norm=False``), which silently made the seed's BN-free nets linear.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = nn.Conv2d(
        in_ch,
        out_ch,
        kernel,
        stride,
        padding=((stride - 1) + (kernel - 1)) // 2,
        bias=not batch_norm,
    )
    if batch_norm:
        layers["bn"] = nn.BatchNorm2d(out_ch)
    layers["act"] = act_layer(activation)()
    return nn.Sequential(layers)


def init_weights(module: nn.Module, scheme: str) -> nn.Module:
    """(Re)initialise every conv and linear layer inside ``module`` by ``scheme``; returns it.

    "torch" keeps PyTorch's defaults (kaiming-uniform with a=sqrt(5): weight variance
    1/(3 fan_in), which shrinks a ReLU signal ~6x per layer without batch norm). "glorot" is
    Keras' default, the seed study's: Glorot-uniform kernels (variance 2/(fan_in + fan_out)),
    zero biases. "kaiming" is He-normal (variance 2/fan_in, fan-in mode), zero biases: the
    variance-preserving choice for ReLU nets. Norm layers keep weight 1, bias 0 in all three.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; allowed: {', '.join(INITS)}")
    if scheme == "torch":
        return module
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            if scheme == "glorot":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def global_pool() -> nn.Module:
    """Global average pool to a (N, C) vector, so any input size ≥ 32 px works."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


class Head(nn.Sequential):
    """The seed's classifier head: dropout → [Dense(w) → (BN) → act]* → Dense(num_classes).

    ``dense=[]`` gives a linear head (the seed's "1 Dense layer"). It always returns logits: the
    seed's softmax / sigmoid outputs live in the loss the trainer picks from ``head_output``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        dense: list[int],
        *,
        activation: str,
        dropout: float,
        batch_norm: bool,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if dropout > 0:
            layers["drop"] = nn.Dropout(dropout)
        width = in_features
        for i, out in enumerate(dense):
            layers[f"fc{i}"] = nn.Linear(width, out, bias=not batch_norm)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm1d(out)
            layers[f"act{i}"] = act_layer(activation)()
            width = out
        layers["out"] = nn.Linear(width, num_classes)
        super().__init__(layers)

    @classmethod
    def from_options(cls, in_features: int, num_classes: int, opts) -> Head:
        """The head every family builds from its shared HeadOptions fields, initialised by
        ``opts.init`` (a pretrained body keeps its weights; only this new head follows it)."""
        head = cls(
            in_features,
            num_classes,
            opts.head_dense,
            activation=opts.activation,
            dropout=opts.dropout,
            batch_norm=opts.batch_norm,
        )
        return init_weights(head, opts.init)


class Classifier(nn.Module):
    """``backbone`` (image → (N, F) features) followed by ``head`` (features → logits).

    Attributes the trainer reads: ``head_output`` ("softmax" → cross-entropy on logits,
    "sigmoid" → BCE-with-logits on one-hot targets), ``backbone_lr_mult``, and, for models with
    auxiliary classifiers, ``aux_outputs`` (logits of the last training-mode forward) weighted by
    ``aux_weight``. ``stages`` lists backbone module names per stage, earliest first, for
    ``freeze``; ``gradcam_target`` names the last spatial block inside the backbone.
    ``input_mean`` / ``input_std`` (0..1 RGB) and ``input_interpolation`` are what the backbone's
    weights expect (a timm backbone's ``pretrained_cfg``; ImageNet's defaults otherwise): the
    trainer and the evaluator normalise with them (:func:`input_norm`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        *,
        head_output: str,
        gradcam_target: str,
        stages: list[list[str]] | None = None,
        backbone_lr_mult: float = 1.0,
        aux_weight: float = 0.0,
        input_mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
        input_std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
        input_interpolation: str = DEFAULT_INTERPOLATION,
        zero_mean_kernels: bool = False,
    ) -> None:
        super().__init__()
        self.input_mean = tuple(float(v) for v in input_mean)
        self.input_std = tuple(float(v) for v in input_std)
        self.input_interpolation = input_interpolation
        self.backbone = backbone
        self.head = head
        self.head_output = head_output
        self.gradcam_target = gradcam_target
        self.stages = stages or []
        self.backbone_lr_mult = backbone_lr_mult
        self.aux_weight = aux_weight
        self.zero_mean_kernels = zero_mean_kernels
        self.constrain()  # the initialised weights, too

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    @torch.no_grad()
    def constrain(self) -> None:
        """With ``zero_mean_kernels``, make every trainable conv and dense kernel zero-mean over
        each output unit's inputs; the trainer calls this after every optimiser step (Keras'
        ``kernel_constraint``). Why: without batch norm every layer's inputs are post-ReLU, all
        positive and nearly the same for every image; an Adam step moves all of a unit's weights
        by about the learning rate, shifting its output alike for every image, and within the
        first epoch that drift outgrows the differences between images: ReLUs die and the output
        ignores the input (loss stuck at ln k). A zero-mean kernel cannot respond to what all
        its inputs share, only to how they differ (benchmarks/presets_manga.py)."""
        if not self.zero_mean_kernels:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m.weight.requires_grad:
                w = m.weight
                w.sub_(w.mean(dim=tuple(range(1, w.dim())), keepdim=True))

    @property
    def aux_outputs(self) -> list[Tensor]:
        return list(getattr(self.backbone, "aux_outputs", []))


def input_norm(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the model's inputs are normalised with; ImageNet's for a model that names none
    (a ``torch.compile`` wrapper is looked through)."""
    model = getattr(model, "_orig_mod", model)
    return (
        tuple(getattr(model, "input_mean", IMAGENET_DEFAULT_MEAN)),
        tuple(getattr(model, "input_std", IMAGENET_DEFAULT_STD)),
    )


def count_params(model: nn.Module) -> int:
    """All parameters, trainable or not (what Keras' summary calls total params)."""
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: nn.Module, image_size: int | tuple[int, int]) -> float:
    """Forward GFLOPs of one image (torch's FlopCounterMode), on the model's device, in eval mode
    (no running statistics move), then back in the mode it was in. Not on a torch.compile'd
    model: the count would compile it."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, h, w, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def apply_freeze(model: Classifier, freeze: str | int) -> None:
    """Freeze the whole backbone, or all but its last ``freeze`` stages. Frozen BatchNorms become
    timm's ``FrozenBatchNorm2d`` so their running statistics stay put in train mode too."""
    if freeze == "none":
        return
    from timm.utils import freeze as timm_freeze  # lazily: see IMAGENET_DEFAULT_MEAN

    if freeze == "backbone":
        timm_freeze(model.backbone)
        return
    assert isinstance(freeze, int)
    stages = model.stages
    require(
        freeze <= len(stages),
        "freeze",
        freeze,
        f"at most {len(stages)} (the number of stages of this backbone)",
    )
    frozen = [name for stage in stages[: len(stages) - freeze] for name in stage]
    if frozen:
        timm_freeze(model.backbone, frozen)


def state_mismatch(own: dict[str, Tensor], state: dict[str, Tensor], source: str = "file") -> str:
    """'' when ``state`` fits ``own`` key for key and shape for shape; else the first missing,
    unexpected and wrongly shaped keys, for an error message."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    return "; ".join(
        f"{label} {items[:5]}{' …' if len(items) > 5 else ''}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            (f"shape mismatches ({source} vs model)", shapes),
        )
        if items
    )
