"""The seed's plain-CNN baseline, trained from scratch.

Default: 4 blocks of conv 3×3 (32, 64, 128, 256 channels; width doubles per block) each followed
by 2×2 max-pool, then global average pool → dropout → Dense 64 → Dense classes (≈0.41 M
parameters at 7 classes). Global pooling instead of Keras' Flatten keeps the head independent of
the input size, so one model serves 32–224 px.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .catalog import VanillaCNNOptions  # registered there, by name, without torch
from .layers import Classifier, Head, apply_freeze, conv_block, global_pool, init_weights, scale


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


def build_vanilla_cnn(num_classes: int, opts: VanillaCNNOptions) -> Classifier:
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
        zero_mean_kernels=opts.zero_mean_kernels,
    )
    apply_freeze(model, opts.freeze)  # for weights warm-started from another study (init_from)
    return model
