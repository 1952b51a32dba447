"""The model zoo: exact seed parameter counts, every model trains a step, checkpoints, freezing,
option errors, regularisation helpers and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import torch_threads
from torch import nn

from study.models import (
    count_params,
    create_model,
    gradcam_layer,
    l2_penalty,
    list_models,
    model_info,
    param_groups,
    register_model,
)
from study.models import registry as registry_mod
from study.models.__main__ import describe, main
from study.models.backbones import MOBILENET_FILE, MobileNetV1, find_weights, read_state_dict
from study.models.registry import check_weights
from study.models.vanilla_cnn import VanillaCNNOptions

REAL_MOBILENET = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / MOBILENET_FILE


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: with several threads, OpenMP spin-waiting next to other busy
    processes costs 10-100× (measured: 0.02 s vs 0.3-3 s per GoogLeNet step on 2 shared cores)."""
    with torch_threads(1):
        yield


def tiny(name: str, **options: object) -> nn.Module:
    """``name`` at its smallest width, so every test runs on CPU in well under a second."""
    if "width_mult" in model_info(name)["options"]:
        options.setdefault("width_mult", 0.125)
    return create_model(name, 7, **options)


def batch(seed: int = 0, size: int = 64) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the seed's exact GoogLeNets


def test_googlenet_matches_the_seed_keras_parameter_count() -> None:
    assert count_params(create_model("googlenet", 7)) == 6_072_375


def test_googlenet_with_one_more_inception_in_stages_3_and_5_matches_the_seed() -> None:
    by_options = create_model(
        "googlenet", 7, extra_inception_3=1, extra_inception_5=1, head_dense=[64, 64]
    )
    assert count_params(by_options) == 7_296_999
    assert count_params(create_model("googlenet_extra", 7)) == 7_296_999


def test_googlenet_stage_widths_and_resolutions_follow_inception_v1() -> None:
    model = create_model("googlenet", 7)
    widths = [
        b.out_channels for s in ("stage3", "stage4", "stage5") for b in getattr(model.backbone, s)
    ]
    assert widths == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    # a true 5×5 in the third branch (torchvision's GoogLeNet uses 3×3 there)
    assert model.backbone.stage3.inception3a.branch3[1].conv.kernel_size == (5, 5)
    small = create_model("googlenet", 7, width_mult=0.125).eval()
    sizes = {}
    for name in ("stage3", "stage5"):
        getattr(small.backbone, name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, out.shape[-1])
        )
    small.backbone.stage4.inception4e.register_forward_hook(
        lambda _m, _i, out: sizes.__setitem__("stage4", out.shape[-1])
    )
    with torch.no_grad():
        small(torch.zeros(1, 3, 224, 224))
    assert sizes == {"stage3": 28, "stage4": 14, "stage5": 7}


def test_paper_stem_swaps_the_3x3_64_conv_for_a_1x1_reduce() -> None:
    seed, paper = create_model("googlenet", 7), create_model("googlenet", 7, stem="paper")
    assert count_params(seed) - count_params(paper) == 64 * 64 * (9 - 1)


def test_batch_norm_and_activation_options_change_the_layers() -> None:
    model = create_model(
        "googlenet",
        7,
        width_mult=0.125,
        batch_norm=True,
        activation="leaky_relu",
        head_output="sigmoid",
    )
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is None for c in convs)  # BN's shift replaces the bias
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.head.modules())
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == len(convs) + 1 and leaky[0].negative_slope == 0.3  # Keras' default
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert model.head_output == "sigmoid"


def test_auxiliary_classifiers_report_logits_only_in_training() -> None:
    model = create_model("googlenet", 7, width_mult=0.125, aux_logits=True)
    model.train()
    model(batch())
    assert model.aux_weight == 0.3
    assert [tuple(a.shape) for a in model.aux_outputs] == [(2, 7), (2, 7)]
    model.eval()
    with torch.no_grad():
        model(batch())
    assert model.aux_outputs == []


# ---------------------------------------------------------------- every model trains a step


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_forward_and_backward(name: str) -> None:
    torch.manual_seed(0)
    model = tiny(name).train()
    out = model(batch())
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    # Grad-CAM hooks a spatial map of this model
    maps = []
    gradcam_layer(model).register_forward_hook(lambda _m, _i, o: maps.append(o))
    with torch.no_grad():
        model.eval()(batch())
    assert maps and maps[0].ndim == 4 and maps[0].shape[0] == 2


def test_any_timm_model_works_through_the_prefix() -> None:
    model = create_model(
        "timm/resnet18", 3, head_dense=[64, 64], activation="leaky_relu", dropout=0.2
    )
    assert model(batch()).shape == (2, 3)
    assert [type(m) for m in model.head if isinstance(m, nn.Linear | nn.LeakyReLU)] == [
        nn.Linear,
        nn.LeakyReLU,
        nn.Linear,
        nn.LeakyReLU,
        nn.Linear,
    ]
    assert gradcam_layer(model) is model.backbone.layer4
    with pytest.raises(ValueError, match="did you mean resnet18"):
        create_model("timm/resnt18", 3)


def test_small_inputs_work_thanks_to_global_pooling() -> None:
    for name in ("googlenet", "vanilla_cnn", "mobilenet_v1_025"):
        assert tiny(name).eval()(batch(size=32)).shape == (2, 7)


# ---------------------------------------------------------------- errors that help


def test_unknown_model_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'googlenets'") as err:
        create_model("googlenets", 7)
    assert all(name in str(err.value) for name in list_models())
    assert "did you mean googlenet" in str(err.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"widht_mult": 0.5}, r"unknown option 'widht_mult'; allowed: .*width_mult"),
        ({"activation": "tanh"}, r"'activation'='tanh'.*'relu', 'leaky_relu'"),
        ({"head_output": "softmax2"}, r"'head_output'.*'softmax', 'sigmoid'"),
        ({"head_dense": "64"}, r"'head_dense'='64' has the wrong type; expected a list"),
        ({"head_dense": [64, 0]}, r"'head_dense'"),
        ({"batch_norm": 1}, r"'batch_norm'=1 has the wrong type; expected bool"),
        ({"dropout": 1.5}, r"'dropout'=1.5 is invalid; expected a float in \[0, 1\)"),
        ({"stem": "resnet"}, r"'stem'.*'seed', 'paper'"),
        ({"extra_inception_3": 2.5}, r"'extra_inception_3'=2.5 has the wrong type"),
        # freeze / backbone_lr_mult exist for init_from warm starts; there are no ImageNet weights
        ({"pretrained": True}, r"unknown option 'pretrained'"),
    ],
)
def test_bad_options_name_the_option_and_what_is_allowed(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("googlenet", 7, **options)


def test_integral_floats_from_json_are_accepted_as_ints() -> None:
    model = create_model("vanilla_cnn", 7, depth=2.0, head_dense=[16.0])
    assert model.options["depth"] == 2 and model.options["head_dense"] == [16]


def test_backbone_option_errors() -> None:
    with pytest.raises(ValueError, match="'freeze'='top'.*'none', 'backbone' or an int"):
        create_model("mobilenet_v1_025", 7, freeze="top")
    with pytest.raises(ValueError, match="model 'mobilenet_v1_025'.*'freeze'=4.*at most 3"):
        create_model("mobilenet_v1_025", 7, freeze=4)
    with pytest.raises(ValueError, match="backbone_lr_mult"):
        create_model("mobilenet_v1_025", 7, backbone_lr_mult=-1.0)
    with pytest.raises(ValueError, match="num_classes=0"):
        create_model("vanilla_cnn", 0)


def test_register_model_adds_checked_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_mod, "_REGISTRY", dict(registry_mod._REGISTRY))
    builder = registry_mod._REGISTRY["vanilla_cnn"].builder
    register_model("vanilla_cnn_deep", VanillaCNNOptions, "six blocks", depth=6)(builder)
    assert "vanilla_cnn_deep" in list_models("vanilla_*")
    assert model_info("vanilla_cnn_deep")["options"]["depth"] == 6
    with pytest.raises(ValueError, match="already registered"):
        register_model("vanilla_cnn_deep", VanillaCNNOptions, "again")(builder)
    with pytest.raises(ValueError, match="'depth'=9"):
        register_model("vanilla_cnn_bad", VanillaCNNOptions, "bad", depth=9)(builder)


# ---------------------------------------------------------------- checkpoints


@pytest.mark.skipif(not REAL_MOBILENET.is_file(), reason=f"{REAL_MOBILENET} not present")
def test_real_mobilenet_reproduces_the_checkpoint_imagenet_logits() -> None:
    raw = torch.load(REAL_MOBILENET, map_location="cpu", weights_only=True)["state_dict"]
    raw = {k.removeprefix("module."): v for k, v in raw.items()}
    reference = MobileNetV1(1000)
    reference.load_state_dict(raw, strict=True)
    model = create_model("mobilenet_v1_025", 1000, pretrained=str(REAL_MOBILENET))
    x = batch(size=96)
    with torch.no_grad():
        expected, got = reference.eval()(x), model.eval()(x)
    assert expected.std() > 0.1  # real logits, not a degenerate input
    torch.testing.assert_close(got, expected)
    # with a 7-class head the body is exactly the checkpoint, and the head is new
    seven = create_model("mobilenet_v1_025", 7, pretrained=True)
    body = seven.backbone.state_dict()
    assert body.keys() == {k for k in raw if not k.startswith("fc.")}
    assert all(torch.equal(body[k], raw[k]) for k in body)
    assert seven.head.out.weight.shape == (7, 256)


def test_pretrained_true_searches_study_weights_dir_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = MobileNetV1(1000)
    torch.save(
        {"state_dict": {"module." + k: v for k, v in source.state_dict().items()}},
        tmp_path / MOBILENET_FILE,
    )
    monkeypatch.setenv("STUDY_WEIGHTS_DIR", str(tmp_path))
    model = create_model("mobilenet_v1_025", 1000, pretrained=True)
    want = source.state_dict()
    got = {
        **model.backbone.state_dict(),
        **{f"fc.{k}": v for k, v in model.head.out.state_dict().items()},
    }
    assert all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(FileNotFoundError, match=rf"'nope.pth' not found; looked in: {tmp_path}"):
        find_weights("nope.pth")


def test_checkpoint_errors_name_the_file_and_the_keys(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        create_model("mobilenet_v1_025", 7, pretrained=str(missing))
    wrong = MobileNetV1(1000).state_dict()
    wrong["stage3.1.4.weight"] = torch.ones(3)
    del wrong["stage1.0.0.weight"]
    wrong["extra.weight"] = torch.ones(1)
    path = tmp_path / "wrong.pth"
    torch.save(wrong, path)
    with pytest.raises(ValueError, match="wrong.pth") as err:
        create_model("mobilenet_v1_025", 7, pretrained=str(path))
    for key in ("stage1.0.0.weight", "extra.weight", "stage3.1.4.weight (3,) vs (256,)"):
        assert key in str(err.value)


def test_mobilenet_weights_are_checked_without_a_build(tmp_path: Path) -> None:
    """What study.run's pre-flight calls for pretrained=True/a path (registry.check_weights)."""
    state = MobileNetV1(1000).state_dict()
    good = tmp_path / "good.pth"
    torch.save(state, good)
    assert check_weights("mobilenet_v1_025", pretrained=str(good)) is True
    del state["stage2.0.0.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(
        ValueError, match=r"bad.pth does not match model 'mobilenet_v1_025'.*stage2"
    ):
        check_weights("mobilenet_v1_025", pretrained=str(tmp_path / "bad.pth"))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        check_weights("mobilenet_v1_025", pretrained=str(tmp_path / "absent.pth"))
    assert check_weights("mobilenet_v1_025", pretrained=False) is False


class NotATensor:
    pass


def test_checkpoints_are_read_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "hook": NotATensor()}, path)
    with pytest.raises(ValueError, match=rf"cannot read checkpoint {path}"):
        read_state_dict(path)


def test_timm_backbone_loads_a_local_checkpoint_without_its_classifier(tmp_path: Path) -> None:
    import timm

    source = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)  # timm's layout, 1000-way fc included
    model = create_model("timm/resnet18", 7, pretrained=str(path))
    body, want = model.backbone.state_dict(), source.state_dict()
    assert body and all(torch.equal(v, want[k]) for k, v in body.items())
    torch.save({k: v for k, v in want.items() if not k.startswith("layer4.")}, path)
    with pytest.raises(ValueError, match=r"resnet18.pth does not match.*layer4"):
        create_model("timm/resnet18", 7, pretrained=str(path))


# ---------------------------------------------------------------- freezing and optimiser groups


def _one_step(model: nn.Module) -> None:
    opt = torch.optim.SGD(param_groups(model, lr=0.1, weight_decay=0.1), momentum=0.9)
    model.train()
    loss = nn.functional.cross_entropy(model(batch()), torch.tensor([0, 1]))
    (loss + 1e-3 * l2_penalty(model)).backward()
    opt.step()


@pytest.mark.parametrize(
    ("name", "freeze", "frozen"),
    [
        ("mobilenet_v1_025", 1, ("stage1", "stage2")),
        ("mobilenet_v1_025", "backbone", ("stage1", "stage2", "stage3")),
        ("timm/resnet18", 2, ("conv1", "bn1", "layer1", "layer2")),
        # all but the last of timm's 8 coarse stages: stem, blocks 0-5 (BNs with activations)
        ("efficientnet_lite0", 1, ("conv_stem", "bn1", *(f"blocks.{i}." for i in range(6)))),
    ],
)
def test_freeze_keeps_frozen_weights_and_statistics_bit_identical(
    name: str, freeze: str | int, frozen: tuple[str, ...]
) -> None:
    torch.manual_seed(0)
    model = create_model(name, 7, freeze=freeze)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _one_step(model)
    after = model.state_dict()
    is_frozen = {k: k.removeprefix("backbone.").startswith(frozen) for k in before}
    assert any(is_frozen.values())
    for key, value in before.items():
        if is_frozen[key]:  # weights and BN running statistics alike
            assert torch.equal(after[key], value), key
    assert not torch.equal(after["head.out.weight"], before["head.out.weight"])
    trainable = [k for k, f in is_frozen.items() if not f and k.endswith("weight")]
    assert any(not torch.equal(after[k], before[k]) for k in trainable)


def test_param_groups_split_lr_and_weight_decay() -> None:
    model = create_model("mobilenet_v1_025", 7, freeze=1, backbone_lr_mult=0.1, head_dense=[8])
    groups = param_groups(model, lr=1e-2, weight_decay=5e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(ids) == sorted(id(p) for p in trainable)  # each trainable param exactly once
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    for g in groups:
        part = "backbone" if id(g["params"][0]) in backbone_ids else "head"
        assert g["name"].startswith(part)
        assert g["lr"] == pytest.approx(1e-3 if part == "backbone" else 1e-2)
        assert all((p.ndim > 1) == (g["weight_decay"] == 5e-4) for p in g["params"])
    # without backbone_lr_mult the backbone trains at the head's rate
    plain = param_groups(create_model("vanilla_cnn", 7, depth=2), lr=1e-2, weight_decay=0.0)
    assert {g["lr"] for g in plain} == {1e-2}


def test_l2_penalty_sums_squared_kernels_only() -> None:
    model = create_model("vanilla_cnn", 7, depth=2, width_mult=0.25, batch_norm=True)
    kernels = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    expected = sum(float((w.detach().double() ** 2).sum()) for w in kernels)
    penalty = l2_penalty(model)
    assert penalty.item() == pytest.approx(expected, rel=1e-6)
    penalty.backward()
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    torch.testing.assert_close(conv.weight.grad, 2 * conv.weight.detach())
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.weight.grad is None  # norm parameters are not penalised
    frozen = create_model("mobilenet_v1_025", 7, freeze="backbone")
    assert l2_penalty(frozen).item() == pytest.approx(frozen.head.out.weight.pow(2).sum().item())


# ---------------------------------------------------------------- CLI


def test_cli_lists_models_with_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["googlenet", "vanilla_cnn", "--num-classes", "7", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "6,072,375" in out and "vanilla_cnn" in out and "64 px" in out
    row = describe("googlenet_extra", 3, 64)
    assert row["params"] == count_params(create_model("googlenet_extra", 3))
    assert 0 < row["gflops"] < describe("googlenet_extra", 3, 128)["gflops"]


def test_cli_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "study.models", "mobilenet_v1_025", "--num-classes", "10"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    # the shipped network's 470,072 parameters with its 1000-way fc swapped for a 10-way one
    assert "mobilenet_v1_025" in result.stdout
    assert f"{470_072 - 256 * 1000 - 1000 + 256 * 10 + 10:,}" in result.stdout


def test_cli_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["nope"])
    assert exit_.value.code == 2 and "unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["googlenet", "vanilla_cnn"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_every_conv_is_followed_by_an_activation(name: str, batch_norm: bool) -> None:
    """The seed's Keras convs all have activation='relu'; a conv block without one makes the
    network (almost) linear and it cannot learn — a bug that parameter counts do not see."""
    model = create_model(name, 7, width_mult=0.125, batch_norm=batch_norm)
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    acts = [m for m in model.backbone.modules() if isinstance(m, torch.nn.ReLU)]
    assert len(acts) >= len(convs) > 0


def largest_kernel_mean(model: nn.Module) -> float:
    """The largest |mean| of one output unit's kernel over its inputs, over every conv/dense."""
    return max(
        float(m.weight.detach().flatten(1).mean(1).abs().max())
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    )


@pytest.mark.parametrize("name", ["googlenet", "vanilla_cnn"])
def test_zero_mean_kernels_start_zero_mean_and_frozen_ones_are_left_alone(name: str) -> None:
    model = tiny(name, zero_mean_kernels=True, init="kaiming")
    assert largest_kernel_mean(model) < 1e-6
    assert largest_kernel_mean(tiny(name, init="kaiming")) > 1e-3  # without the option
    # a frozen layer is not the constraint's: its weights stay bit-identical
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        conv.weight.add_(1.0)
    conv.weight.requires_grad_(False)
    frozen = conv.weight.clone()
    model.constrain()
    assert torch.equal(conv.weight, frozen)


def test_zero_mean_kernels_is_an_option_of_the_from_scratch_families_only() -> None:
    # a pretrained backbone's kernels must never be re-centred
    with pytest.raises(ValueError, match="unknown option 'zero_mean_kernels'"):
        create_model("mobilenet_v1_025", 7, zero_mean_kernels=True)


def test_small_cnn_can_fit_a_batch() -> None:
    torch.manual_seed(0)
    model = create_model("vanilla_cnn", 7, width=8, dropout=0.0)
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 7
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
