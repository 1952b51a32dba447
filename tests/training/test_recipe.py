"""Issue #13: the init option, the at-chance verdict and its use in test selection, the end-of-run
four numbers, and a fast check that the seed's GoogLeNet presets learn."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import torch_threads
from torch import nn

from study.models import create_model
from study.models.layers import init_weights
from study.models.registry import OptionError
from study.results.lookups import select_top
from study.results.statistics import Baseline, at_chance, binomial_upper, chance_bound, verdict
from study.run.summary import chance_lines, format_summary, four_numbers


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with torch_threads(1):
        yield


# ------------------------------------------------------------------------------ init option
@pytest.mark.parametrize("name", ["googlenet", "vanilla_cnn"])
def test_glorot_init_gives_keras_variances_and_zero_biases(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 7, init="glorot")
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for m in layers:
        w = m.weight.detach()
        k = w[0, 0].numel() if w.dim() == 4 else 1
        fan_in, fan_out = w.shape[1] * k, w.shape[0] * k
        bound = math.sqrt(6 / (fan_in + fan_out))  # Keras' glorot_uniform limit
        assert float(w.abs().max()) <= bound + 1e-6
        if w.numel() > 1000:  # uniform(-b, b) has std b / sqrt(3)
            assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert m.bias is None or float(m.bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize("name", ["googlenet", "vanilla_cnn"])
def test_the_seeds_families_default_to_glorot_and_torch_keeps_pytorchs_init(name: str) -> None:
    def weights(**options: object) -> list[torch.Tensor]:
        torch.manual_seed(0)
        return list(create_model(name, 7, **options).state_dict().values())

    assert all(torch.equal(a, b) for a, b in zip(weights(), weights(init="glorot"), strict=True))
    conv = next(
        m for m in create_model(name, 7, init="torch").modules() if isinstance(m, nn.Conv2d)
    )
    w, fan_in, fan_out = conv.weight.detach(), conv.weight[0].numel(), conv.weight[:, 0].numel()
    # PyTorch's kaiming-uniform(a=sqrt(5)) bound 1/sqrt(fan_in), above Glorot's; nonzero biases
    assert math.sqrt(6 / (fan_in + fan_out)) < float(w.abs().max()) <= 1 / math.sqrt(fan_in)
    assert float(conv.bias.detach().abs().max()) > 0


def test_kaiming_init_preserves_relu_variance() -> None:
    conv = create_model("vanilla_cnn", 7, init="kaiming", width=64).backbone.block2.conv0.conv
    fan_in = conv.weight[0].numel()
    assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)


def test_bad_init_names_the_option() -> None:
    with pytest.raises(OptionError, match="'init'='he'.*'torch', 'glorot', 'kaiming'"):
        create_model("googlenet", 7, init="he")
    with pytest.raises(ValueError, match="unknown init 'x'"):
        init_weights(nn.Linear(2, 2), "x")


def test_a_pretrained_body_keeps_its_weights_only_the_new_head_follows_init() -> None:
    torch.manual_seed(0)
    a = create_model("mobilenet_v1_025", 7, pretrained=False, init="torch")
    torch.manual_seed(0)
    b = create_model("mobilenet_v1_025", 7, pretrained=False, init="glorot")
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(a.head.out.weight, b.head.out.weight)
    assert float(b.head.out.bias.detach().abs().max()) == 0.0


# ----------------------------------------------------------------------------- chance verdict
def test_binomial_upper_matches_the_exact_tail() -> None:
    # X ~ Bin(10, 0.5): P(X >= 9) = 11/1024 = 0.0107, P(X >= 8) = 56/1024 = 0.0547
    assert binomial_upper(10, 0.5, 0.05) == 9
    assert binomial_upper(10, 0.5, 0.011) == 9
    assert binomial_upper(10, 0.5, 0.0107) == 10
    # 504 val images, 7 balanced classes: the bound scipy.stats.binom.isf gives (89 / 504)
    assert chance_bound(Baseline(7, 504), epochs=3) == pytest.approx(89 / 504)


def test_at_chance_uses_the_bound_not_a_fixed_threshold() -> None:
    toon = Baseline(7, 504)
    assert at_chance([0.14, 0.16, 0.17], toon)  # the demo's stuck trials: <= 0.177
    assert not at_chance([0.14, 0.16, 0.21], toon)
    small = Baseline(7, 54, majority=12 / 54)  # manga's val split; guessing 'shock' gives 0.22
    assert at_chance([0.22] * 10, small)
    assert at_chance([17 / 54], small)  # 17 of 54 right is still luck on 54 images
    assert not at_chance([18 / 54], small)
    assert not at_chance([0.41], small)
    assert at_chance([float("nan")], toon) and at_chance([], toon)
    assert "at chance after 3 epoch(s): best val acc 0.170 <= 0.177" in verdict(
        [0.1, 0.17, 0.1], toon
    )
    assert verdict([0.5], toon) == ""


def test_baseline_from_a_manifest_uses_the_val_majority() -> None:
    manifest = {
        "classes": ["a", "b", "c"],
        "counts": {"train": 60, "val": 20, "test": 20},
        "class_counts": {"a": {"val": 10}, "b": {"val": 5}, "c": {"val": 5}},
    }
    assert Baseline.from_manifest(manifest) == Baseline(3, 20, 0.5)
    assert Baseline.from_manifest(manifest).p0 == 0.5


def _trials(rows: list[tuple]) -> pd.DataFrame:
    cols = ["trial_id", "status", "val_acc_max", "epochs", "model", "test_acc"]
    df = pd.DataFrame(rows, columns=cols[: len(rows[0])])
    for c in cols[len(rows[0]) :]:
        df[c] = "cnn" if c == "model" else np.nan
    df["test_acc_ci_low"] = df["test_acc"] - 0.03
    df["test_acc_ci_high"] = df["test_acc"] + 0.03
    return df


def test_select_top_skips_at_chance_trials_while_better_ones_exist() -> None:
    base = Baseline(7, 504)
    trials = _trials(
        [
            ("a", "finished", 0.170, 12),  # at chance, yet ranked above nothing that learned
            ("b", "stopped", 0.160, 3),
            ("c", "finished", 0.600, 12),
            ("d", "errored", 0.900, 1),
        ]
    )
    rank = {"metric": "val_acc", "mode": "max"}
    assert select_top(trials, 3, rank, base) == ["c"]
    assert select_top(trials, 3, rank) == ["c", "a", "b"]  # without a baseline: as before
    stuck = trials[trials["trial_id"].isin(["a", "b"])]
    assert select_top(stuck, 1, rank, base) == ["a"]  # none learned: the best of them still goes


def test_four_numbers_and_chance_lines() -> None:
    trials = _trials(
        [
            ("a", "finished", 0.90, 9, "googlenet", 0.85),
            ("b", "stopped", 0.50, 3, "vanilla_cnn", np.nan),
            ("c", "stopped", 0.16, 3, "vanilla_cnn", np.nan),
            ("d", "finished", 0.40, 9, "vanilla_cnn", 0.88),  # better test, worse val
            ("e", "errored", np.nan, 0, "googlenet", np.nan),
        ]
    )
    meta = {"space": "demo", "wall_s": 300.0, "dataset": {"counts": {"test": 504}}}
    n = four_numbers(trials, meta, {"metric": "val_acc", "mode": "max"})
    assert n["best_trial"] == "a" and n["best_test_acc"] == 0.85  # best by validation
    assert n["ci"] == pytest.approx((0.82, 0.88))
    assert n["median_best_val"] == pytest.approx(0.45) and n["ended"] == 4
    assert n["spread"] == pytest.approx(0.74)
    text = format_summary(n, demo=True)
    assert "best test acc       0.850 (95% CI 0.820-0.880, test split, 504 images" in text
    assert "(demo target >= 0.80: met)" in text and "<= 360: met)" in text
    assert "demo target" not in format_summary(n, demo=False)
    lines = chance_lines(trials, Baseline(7, 504))
    assert len(lines) == 1 and lines[0].startswith("[c] vanilla_cnn at chance after 3 epoch(s)")


EPOCHS = 30  # one batch (the whole subset) per epoch


# ------------------------------------------------------------------- the seed's presets learn
@pytest.fixture(scope="module")
def tiny_toon():
    """14 toon faces (2 per emotion) at 24 px as a TrialData whose val split is its train split:
    what is checked is that the network fits what it sees, the first thing a model that can
    learn does (a network whose output ignores its input cannot)."""
    import io

    from PIL import Image

    from study.data import SplitArrays, toon
    from study.training.steps import TrialData

    imgs = list(toon.generate(14, seed=0, image_size=24))
    x = np.stack([np.asarray(Image.open(io.BytesIO(i.png)).convert("RGB")) for i in imgs])
    split = SplitArrays(
        np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
        np.array([toon.EMOTIONS.index(i.label) for i in imgs]),
        [i.name for i in imgs],
    )
    return TrialData(train=split, val=split, classes=list(toon.EMOTIONS))


def _presets() -> list[dict]:
    import optuna

    from search_spaces import googlenet_manga

    return [
        googlenet_manga.space(optuna.trial.FixedTrial(p))
        for p in googlenet_manga.SETTINGS.starting_points
    ]


@pytest.mark.parametrize(
    ("preset", "overlay"),
    [(0, {}), (1, {}), (0, {"init": "torch", "zero_mean_kernels": False})],
    ids=["googlenet", "googlenet_extra_inception_3_5", "googlenet_before_13_stays_flat"],
)
def test_the_seeds_googlenet_presets_learn_on_a_tiny_toon_subset(
    tiny_toon, preset: int, overlay: dict
) -> None:
    """The googlenet_manga starting points, trained as configured (the seed's recipe: Adam 1e-3,
    batch 32, augmentation 0.5, dropout 0.4, class weights; a cosine schedule over the 30 steps;
    BN-free, so He init and zero-mean kernels) through the trainable's epoch loop, 30 steps.
    The loss leaves ln 7 = 1.946 (measured: min of the last 3 epochs 0.016 and 0.030); as built
    before #13 (PyTorch's init, no constraint) the features are the same for every image and it
    stays there (1.940)."""
    from benchmarks.recipe import run_one

    config = _presets()[preset]
    assert config["batch_norm"] is False
    assert config["zero_mean_kernels"] is True and config["init"] == "kaiming"
    hist = run_one({**config, **overlay, "seed": 0}, tiny_toon, epochs=EPOCHS)
    tail = min(h["train_loss"] for h in hist[-3:])
    # about halfway between the measured outcomes: learning is not a matter of the last decimal
    if overlay:
        assert tail > 0.97 * math.log(7), tail
    else:
        assert tail < 0.5 * math.log(7), tail


@pytest.mark.parametrize("zero_mean", [True, False])
def test_the_trainer_keeps_zero_mean_kernels_after_every_step(tiny_toon, zero_mean: bool) -> None:
    """train_epoch applies the model's kernel constraint after each optimiser step; without the
    option, Adam's steps move kernel means off zero (so the check can tell the two apart)."""
    import torch
    from torch import nn

    from study.training.config import TrainConfig
    from study.training.trial import setup_trial

    config = {"model": "googlenet", "width_mult": 0.125, "zero_mean_kernels": zero_mean}
    cfg = TrainConfig.from_config({**config, "batch_size": 4, "max_epochs": 1, "seed": 0})
    t = setup_trial(cfg, tiny_toon, torch.device("cpu"))
    kernels = [m.weight for m in t.model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    before = [w.detach().clone() for w in kernels]
    t.train(tiny_toon, 0)  # 4 steps: 14 images in batches of 4, 4, 4 and 2
    assert all(not torch.equal(w, b) for w, b in zip(kernels, before, strict=True))
    worst = max(float(w.detach().flatten(1).mean(1).abs().max()) for w in kernels)
    assert (worst < 1e-6) if zero_mean else (worst > 1e-4), worst
