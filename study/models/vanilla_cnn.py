"""The seed's plain-CNN baseline, trained from scratch.

Default: 4 blocks of conv 3×3 (32, 64, 128, 256 channels; width doubles per block) each followed
by 2×2 max-pool, then global average pool → dropout → Dense 64 → Dense classes (≈0.41 M
parameters at 7 classes). Global pooling instead of Keras' Flatten keeps the head independent of
the input size, so one model serves 32–224 px.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from .backbones import TransferOptions, apply_freeze
from .layers import Classifier, Head, conv_block, global_pool, init_weights, scale
from .registry import one_of, register_model, require

KERNELS = (3, 5, 7)


@dataclass
class VanillaCNNOptions(TransferOptions):
    depth: int = 4
    width: int = 32
    convs_per_block: int = 1
    kernel_size: int = 3
    width_mult: float = 1.0
    init: str = "glorot"  # Keras' initialisation, as the seed trained it (see googlenet.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        # Each block halves the resolution; past 6 a 64 px input is already 1×1.
        require(1 <= self.depth <= 6, "depth", self.depth, "an int in [1, 6]")
        require(1 <= self.width <= 512, "width", self.width, "an int in [1, 512]")
        require(
            1 <= self.convs_per_block <= 4,
            "convs_per_block",
            self.convs_per_block,
            "an int in [1, 4]",
        )
        require(self.kernel_size in KERNELS, "kernel_size", self.kernel_size, one_of(KERNELS))
        require(0 < self.width_mult <= 4, "width_mult", self.width_mult, "a float in (0, 4]")


def _features(opts: VanillaCNNOptions) -> tuple[nn.Sequential, int]:
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch = 3
    for b in range(opts.depth):
        out_ch = scale(opts.width * 2**b, opts.width_mult)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for c in range(opts.convs_per_block):
            layers[f"conv{c}"] = conv_block(
                in_ch,
                out_ch,
                opts.kernel_size,
                batch_norm=opts.batch_norm,
                activation=opts.activation,
            )
            in_ch = out_ch
        # ceil_mode keeps a 1×1 map at 1×1 instead of failing on small inputs.
        layers["pool"] = nn.MaxPool2d(2, ceil_mode=True)
        blocks[f"block{b}"] = nn.Sequential(layers)
    blocks["global_pool"] = global_pool()
    return nn.Sequential(blocks), in_ch


@register_model(
    "vanilla_cnn",
    VanillaCNNOptions,
    "plain CNN baseline from scratch: 4 × (conv 3×3 → max-pool), Dense 64 head",
)
def _vanilla_cnn(num_classes: int, opts: VanillaCNNOptions) -> Classifier:
    features, width = _features(opts)
    init_weights(features, opts.init)
    head = Head.from_options(width, num_classes, opts)
    last = f"block{opts.depth - 1}"
    model = Classifier(
        features,
        head,
        head_output=opts.head_output,
        # the last conv before pooling: the finest map that still sees the whole network
        gradcam_target=f"{last}.conv{opts.convs_per_block - 1}",
        stages=[[f"block{b}"] for b in range(opts.depth)],
        backbone_lr_mult=opts.backbone_lr_mult,
    )
    apply_freeze(model, opts.freeze)  # for weights warm-started from another study (init_from)
    return model
