"""The plain families (vanilla CNN, GoogLeNet) never import timm: its import pulls in torchvision
and costs every trial worker and driver about as much again as torch. What study.models writes
out instead of importing (activations, ImageNet statistics, the weight-decay split) must stay
what timm would have given."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import get_act_layer
from timm.optim import param_groups_weight_decay

from study.models import create_model, layers, list_models, model_info
from study.models.layers import ACTIVATIONS, apply_freeze
from study.models.regularization import decay_groups

PLAIN_STUDY = """
import sys
import study.run, study.tuning.trainable, study.evaluation.test_split, study.evaluation.inference
from study.models import create_model, param_groups
for name, opts in (("vanilla_cnn", {"width": 4, "depth": 2}), ("googlenet", {"width_mult": 0.125})):
    model = create_model(name, 7, **opts)
    param_groups(model, 1e-3, 0.0)
loaded = sorted(m for m in ("timm", "torchvision") if m in sys.modules)
print("loaded:", loaded)
"""


def test_a_plain_cnn_study_imports_neither_timm_nor_torchvision() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_STUDY], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("loaded: []"), out.stdout


def test_the_written_out_imagenet_statistics_are_timms() -> None:
    assert layers.IMAGENET_DEFAULT_MEAN == IMAGENET_DEFAULT_MEAN
    assert layers.IMAGENET_DEFAULT_STD == IMAGENET_DEFAULT_STD


@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS) - {"leaky_relu"}))
def test_activations_compute_what_timms_factory_gives(name: str) -> None:
    x = torch.linspace(-4, 4, 101)
    assert torch.equal(ACTIVATIONS[name]()(x), get_act_layer(name)()(x))


def test_leaky_relu_is_the_seed_keras_layer() -> None:
    assert ACTIVATIONS["leaky_relu"]()(torch.tensor([-1.0])).item() == pytest.approx(-0.3)


@pytest.mark.parametrize("name", list_models())
def test_the_decay_split_is_timms_for_every_family(name: str) -> None:
    """Same tensors, same order, same groups: an optimiser state saved before the split was
    written out loads into one built after it."""
    options = {"width_mult": 0.125} if "width_mult" in model_info(name)["options"] else {}
    model = create_model(name, 7, **options)
    if name == "resnet50":  # a frozen part must be left out by both
        apply_freeze(model, "backbone")
    ours, theirs = decay_groups(model, 0.05), param_groups_weight_decay(model, 0.05)
    assert [g["weight_decay"] for g in ours] == [g["weight_decay"] for g in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert [id(p) for p in a["params"]] == [id(p) for p in b["params"]]
