"""Warm starts between studies (init_from, manga_from_toon) and the input normalisation each
backbone's weights expect (issue #14, items 4 and 5). Tiny models, 32 px, no Ray, no download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from conftest import MANGA_CLASSES, requires_manga

from study.data import SplitArrays
from study.models import create_model, input_norm
from study.results.errors import StudyFileError
from study.spaces.loader import SpaceFunction, load_space
from study.training.config import TrainConfig
from study.training.fit import fit
from study.training.steps import TrialData
from study.training.transfer import inherited_config, parse, resolve, warm_start
from study.training.trial import setup_trial

TOON = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
SOURCE = {
    "model": "vanilla_cnn",
    "width": 8,
    "depth": 2,
    "batch_norm": True,
    "head_dense": [],
    "image_size": 32,
    "lr": 1e-3,
    "seed": 3,
}


def make_source(root: Path, classes: list[str], config: dict = SOURCE) -> tuple[Path, dict]:
    """A finished study with two trials: 'best' (ranked first) and 'other', each with the files a
    trial leaves (params.json, checkpoint_*/best.pt); returns its dir and best's weights."""
    sd = root / "src"
    cfg = TrainConfig.from_config(config)
    states = {}
    for i, tid in enumerate(["best", "other"]):
        torch.manual_seed(i)
        model = create_model(cfg.model, len(classes), **cfg.model_options)
        states[tid] = {k: v.clone() for k, v in model.state_dict().items()}
        (sd / tid / "checkpoint_000002").mkdir(parents=True)
        torch.save(model.state_dict(), sd / tid / "checkpoint_000002" / "best.pt")
        (sd / tid / "params.json").write_text(json.dumps(config))
    meta = {"dataset": {"classes": classes}, "settings": {"metric": "val_acc", "mode": "max"}}
    (sd / "study.json").write_text(json.dumps(meta))
    pd.DataFrame(
        {
            "trial_id": ["best", "other"],
            "status": ["finished", "finished"],
            "val_acc_max": [0.6, 0.4],
        }
    ).to_parquet(sd / "trials.parquet")
    return sd, states["best"]


def arrays(n: int, k: int, seed: int = 0) -> SplitArrays:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return SplitArrays(images, np.arange(n) % k, [f"{i}.png" for i in range(n)])


def test_parse_keeps_uri_colons() -> None:
    assert parse("studies/a:t1") == ("studies/a", "t1")
    assert parse("studies/a") == ("studies/a", None)
    assert parse("s3://bucket/a") == ("s3://bucket/a", None)
    assert parse("s3://bucket/a:final") == ("s3://bucket/a", "final")


def test_warm_start_loads_the_backbone_and_a_new_head_for_new_classes(tmp_path) -> None:
    sd, state = make_source(tmp_path, TOON)
    cfg = TrainConfig.from_config({**SOURCE, "init_from": str(sd)})
    torch.manual_seed(99)
    model = create_model(cfg.model, len(MANGA_CLASSES), **cfg.model_options)
    fresh_head = model.head.out.weight.clone()
    note = warm_start(model, str(sd), list(MANGA_CLASSES))
    assert "trial best" in note and "new head" in note  # the best trial by the study's ranking
    got = model.state_dict()
    for k, v in state.items():
        if k.startswith("backbone."):
            assert torch.equal(got[k], v), k
    assert torch.equal(model.head.out.weight, fresh_head)  # 7 manga classes, not toon's
    # same classes, same head: the head comes along; a named trial is that trial
    same = create_model(cfg.model, len(TOON), **cfg.model_options)
    assert "backbone and head" in warm_start(same, f"{sd}:best", TOON)
    assert torch.equal(same.head.out.weight, state["head.out.weight"])
    assert "trial other" in warm_start(same, f"{sd}:other", TOON)


def test_a_different_network_is_a_named_error(tmp_path) -> None:
    sd, _ = make_source(tmp_path, TOON)
    model = create_model("vanilla_cnn", 7, width=16, depth=2, batch_norm=True)
    fit_error = rf"init_from '{sd}': its weights do not fit.*shape mismatches"
    with pytest.raises(ValueError, match=fit_error):
        warm_start(model, str(sd), TOON)
    with pytest.raises(ValueError, match="trial nope has no checkpoint"):
        resolve(f"{sd}:nope")


def test_freeze_and_backbone_lr_mult_act_on_warm_started_weights(tmp_path) -> None:
    sd, state = make_source(tmp_path, TOON)
    base = {**SOURCE, "init_from": str(sd), "max_epochs": 1}
    train = arrays(24, 7)
    frozen = fit({**base, "freeze": "backbone"}, train, list(MANGA_CLASSES), 1).model
    for k, v in frozen.state_dict().items():  # weights and BN statistics stay the source's
        if k.startswith("backbone.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(v, state[k]), k
    cfg = TrainConfig.from_config({**base, "backbone_lr_mult": 0.1})
    data = TrialData(train, train, list(MANGA_CLASSES))
    t = setup_trial(cfg, data, torch.device("cpu"))
    lrs = {g["name"].split("/")[0]: g["lr"] for g in t.opt.param_groups}
    assert lrs == {"backbone": pytest.approx(1e-4), "head": pytest.approx(1e-3)}
    assert torch.equal(
        t.model.state_dict()["backbone.block0.conv0.conv.weight"],
        state["backbone.block0.conv0.conv.weight"],
    )


def test_a_lite_model_warm_starts_freezes_and_splits_its_lr_like_the_others(tmp_path) -> None:
    """init_from, freeze and backbone_lr_mult on an EfficientNet-Lite (a timm backbone whose BNs
    carry their activation: timm freezes them as FrozenBatchNormAct2d)."""
    lite = {**SOURCE, "model": "efficientnet_lite0", "pretrained": False, "head_dense": []}
    for key in ("width", "depth", "batch_norm"):
        del lite[key]
    sd, state = make_source(tmp_path, TOON, lite)
    base = {**lite, "init_from": str(sd), "max_epochs": 1}
    train = arrays(24, 7)
    frozen = fit({**base, "freeze": "backbone"}, train, list(MANGA_CLASSES), 1).model
    got = frozen.state_dict()
    body = [k for k in state if k.startswith("backbone.") and not k.endswith("batches_tracked")]
    assert body and all(torch.equal(got[k], state[k]) for k in body)
    assert not torch.equal(got["head.out.weight"][:1], state["head.out.weight"][:1])
    cfg = TrainConfig.from_config({**base, "backbone_lr_mult": 0.1})
    t = setup_trial(cfg, TrialData(train, train, list(MANGA_CLASSES)), torch.device("cpu"))
    lrs = {g["name"].split("/")[0]: g["lr"] for g in t.opt.param_groups}
    assert lrs == {"backbone": pytest.approx(1e-4), "head": pytest.approx(1e-3)}
    assert torch.equal(t.model.state_dict()[body[0]], state[body[0]])


def test_manga_from_toon_fine_tunes_a_toon_model(tmp_path) -> None:
    """The shipped space, its network inherited from a toon source, one epoch on manga-shaped
    tiny data; and study.run refuses it without --init-from."""
    sd, state = make_source(tmp_path, TOON)
    space = load_space("manga_from_toon")
    constants = inherited_config(str(sd))
    assert constants["model"] == "vanilla_cnn" and constants["width"] == 8
    assert constants["init_from"] == f"{sd}:best"  # pinned to the trial it resolved to
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    config = {
        **constants,
        **SpaceFunction("manga_from_toon")(trial),
        "seed": 0,
        "max_epochs": 1,
        "image_size": 32,
        "batch_size": 8,
    }
    fitted = fit(config, arrays(21, 7), list(MANGA_CLASSES), 1)
    assert "from " + str(sd) in fitted.note and fitted.history[0]["train_loss"] > 0
    assert fitted.model.head.out.out_features == 7
    assert space.settings.dataset == "manga" and space.module.NEEDS_INIT_FROM


def test_timm_backbones_get_their_own_mean_and_std() -> None:
    """Each timm backbone's pretrained_cfg decides (vit, inception_v3.tv, xception: 0.5 / 0.5),
    not ImageNet's defaults for all; timm's tiny test models stand in for the big ones."""
    vit = create_model("timm/test_vit", 3)
    assert input_norm(vit) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert vit.input_interpolation == vit.backbone.pretrained_cfg["interpolation"]
    byob = create_model("timm/test_byobnet", 3)
    assert input_norm(byob) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # the trainer normalises with them
    cfg = TrainConfig.from_config({"model": "timm/test_vit", "image_size": 32})
    data = TrialData(arrays(2, 3), arrays(2, 3), ["a", "b", "c"])
    aug = setup_trial(cfg, data, torch.device("cpu")).aug
    assert aug.mean.flatten().tolist() == [0.5] * 3 and aug.std.flatten().tolist() == [0.5] * 3


@requires_manga
def test_mobilenet_keeps_the_weights_dead_relu_channels_exactly_zero() -> None:
    """benchmarks/mobilenet_activation.py's finding on a few real manga images: channels whose
    stored BN variance is 0 (a dead unit in training) stay exactly constant with our MobileNet
    (ReLU), which LeakyReLU(0.1) would not do."""
    from conftest import MANGA_DIR

    from benchmarks.mobilenet_activation import bn_statistics, load_images

    model = create_model("mobilenet_v1_025", 1000, pretrained=True, head_dense=[], dropout=0.0)
    stats = bn_statistics(model.backbone, load_images(MANGA_DIR, 8))
    dead = stats[stats["dead"] > 0]
    assert len(dead) >= 3 and (dead["dead_batch_var"] == 0).all()


def test_damaged_source_weights_are_named(tmp_path) -> None:
    """A warm start from a corrupt best.pt, or from a final_model/ whose model.pt is missing, is
    one line naming the file (issue #27, item 9), never torch's advice to load it unsafely."""
    sd, _ = make_source(tmp_path, TOON)
    best = sd / "best" / "checkpoint_000002" / "best.pt"
    model = create_model("vanilla_cnn", len(TOON), width=8, depth=2, batch_norm=True)
    for damage in (b"not a checkpoint", best.read_bytes()[:64]):
        best.write_bytes(damage)
        with pytest.raises(StudyFileError) as e:
            warm_start(model, str(sd), TOON)
        assert str(best) in str(e.value) and "\n" not in str(e.value)
        assert "weights_only" not in str(e.value)
    torch.save({"weights": np.zeros(2)}, best)
    with pytest.raises(StudyFileError, match="holds more than weights") as e:
        warm_start(model, f"{sd}:best", TOON)
    assert "weights_only" not in str(e.value)
    (sd / "final_model").mkdir()
    (sd / "final_model" / "final.json").write_text(json.dumps({"config": SOURCE}))
    with pytest.raises(StudyFileError, match=r"final_model/model.pt: missing"):
        resolve(f"{sd}:final")
