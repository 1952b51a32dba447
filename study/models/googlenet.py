"""GoogLeNet (Inception v1) from scratch, by default exactly the seed study's Keras model.

Seed: conv 7×7/2 (64) → max-pool → conv 3×3 (64) → conv 3×3 (192) → max-pool → 3a, 3b → pool
→ 4a–4e → pool → 5a, 5b → global average pool → dropout → Dense 64 → Dense classes; convs keep
biases, no BN, true 5×5 branches, Glorot-uniform kernels and zero biases (Keras' defaults;
``init="torch"`` for PyTorch's). 6,072,375 parameters at 7 classes. Built so, without BN, it
stays at chance on manga for 10 epochs; ``zero_mean_kernels`` with ``init="kaiming"`` lets it
learn (see ``Classifier.constrain``).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import Tensor, nn

from .catalog import GoogLeNetOptions  # registered there, by name, without torch
from .layers import (
    Classifier,
    Head,
    act_layer,
    apply_freeze,
    conv_block,
    global_pool,
    init_weights,
    scale,
)

# (1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool proj), Szegedy et al. 2014, table 1.
INCEPTION_V1: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1×1 | 1×1→3×3 | 1×1→5×5 | pool→1×1."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], conv: partial[nn.Module]) -> None:
        super().__init__()
        b1, r3, b3, r5, b5, pool_proj = widths
        self.branch1 = conv(in_ch, b1, 1)
        self.branch2 = nn.Sequential(conv(in_ch, r3, 1), conv(r3, b3, 3))
        self.branch3 = nn.Sequential(conv(in_ch, r5, 1), conv(r5, b5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv(in_ch, pool_proj, 1))
        self.out_channels = b1 + b3 + b5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxClassifier(nn.Sequential):
    """The paper's auxiliary head on 4a / 4d: avg-pool → 1×1 conv 128 → FC 1024 → dropout 0.7 →
    FC classes. Pools adaptively to 4×4 (as torchvision does) so any input size works."""

    def __init__(
        self,
        in_ch: int,
        num_classes: int,
        conv: partial[nn.Module],
        mult: float,
        activation: nn.Module,
    ) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(4),
            conv(in_ch, scale(128, mult), 1),
            nn.Flatten(1),
            nn.Linear(scale(128, mult) * 16, scale(1024, mult)),
            activation,
            nn.Dropout(0.7),
            nn.Linear(scale(1024, mult), num_classes),
        )


class GoogLeNetFeatures(nn.Module):
    """Stem and the three Inception stages, global-average-pooled to ``num_features``."""

    def __init__(self, opts: GoogLeNetOptions, num_classes: int) -> None:
        super().__init__()
        conv = partial(conv_block, batch_norm=opts.batch_norm, activation=opts.activation)
        m = opts.width_mult
        c64, c192 = scale(64, m), scale(192, m)
        # The seed replaces the paper's 1×1 reduce before the 3×3 (192) with a 3×3 (64).
        k = 3 if opts.stem == "seed" else 1
        self.stem = nn.Sequential(
            conv(3, c64, 7, 2),
            nn.MaxPool2d(3, 2, 1),
            conv(c64, c64, k),
            conv(c64, c192, 3),
            nn.MaxPool2d(3, 2, 1),
        )
        extra = {"3a": opts.extra_inception_3, "5a": opts.extra_inception_5}
        width = c192
        stages: list[nn.Sequential] = []
        for stage in ("3", "4", "5"):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for name, widths in INCEPTION_V1.items():
                if not name.startswith(stage):
                    continue
                # extra_inception_N repeats block Na, now fed Na's own output, before the next.
                for i in range(1 + extra.get(name, 0)):
                    block = Inception(width, tuple(scale(w, m) for w in widths), conv)
                    blocks[f"inception{name}" + (f"_{i}" if i else "")] = block
                    width = block.out_channels
            stages.append(nn.Sequential(blocks))
        self.stage3, self.stage4, self.stage5 = stages
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.global_pool = global_pool()
        self.num_features = width
        self.aux: nn.ModuleDict | None = None
        if opts.aux_logits:
            act = act_layer(opts.activation)
            self.aux = nn.ModuleDict(
                {
                    name: AuxClassifier(
                        self.stage4.get_submodule(block).out_channels, num_classes, conv, m, act()
                    )
                    for block, name in AUX_AFTER.items()
                }
            )
        self.aux_outputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.stage3(self.stem(x)))
        aux: list[Tensor] = []
        for name, block in self.stage4.named_children():
            x = block(x)
            if self.aux is not None and self.training and name in AUX_AFTER:
                aux.append(self.aux[AUX_AFTER[name]](x))
        # Kept for the trainer (loss += aux_weight * loss(aux)); empty in eval mode.
        self.aux_outputs = aux
        x = self.stage5(self.pool(x))
        return self.global_pool(x)


def build_googlenet(num_classes: int, opts: GoogLeNetOptions) -> Classifier:
    features = init_weights(GoogLeNetFeatures(opts, num_classes), opts.init)
    head = Head.from_options(features.num_features, num_classes, opts)
    model = Classifier(
        features,
        head,
        head_output=opts.head_output,
        gradcam_target="stage5",
        stages=[["stem"], ["stage3"], ["stage4"], ["stage5"]],
        aux_weight=0.3 if opts.aux_logits else 0.0,  # the paper's discount for auxiliary losses
        backbone_lr_mult=opts.backbone_lr_mult,
        zero_mean_kernels=opts.zero_mean_kernels,
    )
    apply_freeze(model, opts.freeze)  # for weights warm-started from another study (init_from)
    return model
