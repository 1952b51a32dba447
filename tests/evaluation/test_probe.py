"""The linear-probe baseline (study.evaluation.probe): C chosen on val only, a probe that beats the
majority class where the features separate the classes and not where they do not, mirror-averaged
features, which backbones a space probes, and a failing backbone as a row of its own."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray
import torch
from conftest import MANGA_CLASSES, face_png, study_cli

from study.data import SplitArrays, open_dataset, prepare
from study.evaluation.probe import (
    C_GRID,
    Backbone,
    backbones,
    choose_c,
    features,
    plan,
    probe_job,
)
from study.models import create_model
from study.models.backbones import MOBILENET_FILE, find_weights
from study.results.schema import CONFIRM
from study.results.statistics import accuracy_ci
from study.results.tables import check_schema
from study.run import __main__ as run
from study.run.overrides import split_smoke
from study.spaces.constants import trial_constants
from study.spaces.loader import SpaceFunction, load_space

CLASSES = 3


def blobs(n: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points of 3 classes (shares 1/2, 1/4, 1/4) in 8-D: class means 4 apart, `spread` the
    noise's sd (huge: the features say nothing about the class)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, size=n, p=[0.5, 0.25, 0.25])
    means = np.eye(CLASSES, 8) * 4.0
    return means[y] + rng.normal(0, spread, (n, 8)), y


def test_separable_features_beat_the_majority_class_beyond_the_noise() -> None:
    clf, c, val_acc = choose_c(blobs(90, 0.5, 0), blobs(45, 0.5, 1))
    x, y = blobs(60, 0.5, 2)
    acc, low, _ = accuracy_ci(clf.predict(x) == y)
    majority = np.bincount(y).max() / len(y)
    assert val_acc > 0.9 and acc > 0.9
    assert low > majority  # its exact interval clears always answering the largest class


def test_features_without_the_class_do_not_beat_the_majority_class() -> None:
    clf, _, _ = choose_c(blobs(90, 1000.0, 0), blobs(45, 1000.0, 1))
    x, y = blobs(60, 1000.0, 2)
    acc, low, high = accuracy_ci(clf.predict(x) == y)
    majority = np.bincount(y).max() / len(y)
    assert low <= majority and acc < majority + 0.15


def test_c_is_chosen_on_val_and_the_smaller_wins_a_tie() -> None:
    train = blobs(60, 0.5, 0)
    _, c, acc = choose_c(train, blobs(30, 0.5, 1), grid=(10.0, 0.1, 1.0))
    assert acc == 1.0 and c == 0.1  # every C is perfect on val here: the strongest penalty
    # labels on val that no C can fit: still a C of the grid, its val accuracy what it scored
    x, y = blobs(30, 0.5, 1)
    _, c, acc = choose_c(train, (x, (y + 1) % CLASSES), grid=(0.1, 1.0))
    assert c in (0.1, 1.0) and acc < 0.2
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        choose_c((train[0], np.zeros(60, int)), blobs(30, 0.5, 1))
    with pytest.raises(ValueError, match="validation split is empty"):
        choose_c(train, (np.zeros((0, 8)), np.zeros(0, int)))


def test_features_average_the_mirror_image_in() -> None:
    torch.manual_seed(0)
    model = create_model("vanilla_cnn", CLASSES, width=4, depth=2, head_dense=[]).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 16, 16), dtype=np.uint8)
    arr = SplitArrays(images, np.zeros(5, int), [str(i) for i in range(5)])
    mirrored = SplitArrays(np.ascontiguousarray(images[..., ::-1]), arr.labels, arr.paths)
    f = features(model, arr, torch.device("cpu"), batch_size=2)  # across batch borders
    assert f.ndim == 2 and len(f) == 5 and f.dtype == np.float32
    assert np.allclose(f, features(model, mirrored, torch.device("cpu")), atol=1e-5)
    first = SplitArrays(images[:1], arr.labels[:1], arr.paths[:1])
    assert np.allclose(features(model, first, torch.device("cpu"))[0], f[0], atol=1e-5)
    assert not np.allclose(f[0], f[1])  # the images differ, and so do their features


def _constants(space) -> dict:
    return trial_constants(space.settings, 1.0)


def test_the_backbones_a_space_probes() -> None:
    manga = load_space("mobilenet_manga")
    found = backbones(SpaceFunction("mobilenet_manga"), manga.settings, _constants(manga))
    # the head, freezing and LR options of its trials shape no frozen feature: one backbone
    assert found == (Backbone("mobilenet_v1_025", json.dumps({"pretrained": True})),)
    resnet = load_space("resnet50_manga")
    fn = SpaceFunction("resnet50_manga")
    assert [b.model for b in backbones(fn, resnet.settings, _constants(resnet))] == [
        "timm/resnet50"
    ]
    # its smoke test trains an untrained timm/resnet18: nothing pretrained to probe
    smoke = SpaceFunction("resnet50_manga", split_smoke(resnet.settings)[1])
    assert backbones(smoke, resnet.settings, _constants(resnet)) == ()
    demo = load_space("demo")
    assert backbones(SpaceFunction("demo"), demo.settings, _constants(demo)) == ()


def test_the_flag_decides_and_probe_on_nothing_is_an_error() -> None:
    manga, demo = load_space("mobilenet_manga"), load_space("demo")
    args = (SpaceFunction("mobilenet_manga"), manga.settings, _constants(manga), "mobilenet_manga")
    assert plan(None, *args) == plan(True, *args) != ()
    assert plan(False, *args) == ()
    demo_args = (SpaceFunction("demo"), demo.settings, _constants(demo), "demo")
    assert plan(None, *demo_args) == ()  # by default: only where a model is pretrained
    with pytest.raises(ValueError, match="--probe: space demo uses no pretrained backbone"):
        plan(True, *demo_args)


def test_probe_on_a_space_without_pretrained_models_fails_before_ray(
    tiny_toon, tmp_path, capsys
) -> None:
    args = ["--space", "demo", "--probe", "--data-dir", str(tiny_toon)]
    rc = run.main([*args, "--storage", str(tmp_path / "s"), "--no-report"])
    assert rc == 2
    assert "--probe: space demo uses no pretrained backbone" in capsys.readouterr().err
    assert not ray.is_initialized() and not (tmp_path / "s").exists()


def test_each_backbone_gets_its_row_and_a_failing_one_its_error(tiny_toon) -> None:
    """On the 84-image toon set at 16 px: the shipped MobileNet weights give a scored row (C of
    the grid, test accuracy within its exact interval); a missing checkpoint is a row naming it,
    and the other backbone is still probed."""
    try:
        find_weights(MOBILENET_FILE)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    ds = open_dataset(str(tiny_toon), "toon")
    missing = Backbone("mobilenet_v1_025", json.dumps({"pretrained": "/nonexistent/w.pth"}))
    good = Backbone("mobilenet_v1_025", json.dumps({"pretrained": True}))
    bad_row, row = probe_job(ds, 16, (missing, good))
    assert bad_row["kind"] == row["kind"] == "probe"
    assert "/nonexistent/w.pth" in bad_row["error"] and "test_acc" not in bad_row
    assert row["error"] == "" and row["n_train"] == len(ds.table("train"))
    assert row["n_val"] == len(ds.table("val")) and row["probe_c"] > 0
    assert 0 <= row["test_acc_ci_low"] <= row["test_acc"] <= row["test_acc_ci_high"] <= 1
    assert 0 <= row["val_acc"] <= 1 and row["wall_s"] > 0


def test_a_smoke_study_of_a_pretrained_space_writes_the_probe(tmp_path, shared_ray) -> None:
    """`python -m study.run --space mobilenet_manga --smoke-test --probe` on a tiny manga-layout
    set: confirm.parquet holds a probe row with a test accuracy and its exact interval, the run's
    summary and the report show it as the bar."""
    try:
        find_weights(MOBILENET_FILE)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    manga = tmp_path / "src" / "Manga Facial Expressions"
    for c, cls in enumerate(MANGA_CLASSES):
        for i in range(4):
            face_png(manga / cls / f"{cls}_{i}.png", seed=c * 10 + i, size=32)
    prepare("manga", source=tmp_path / "src", data_dir=tmp_path / "data")
    r = study_cli(
        *("--space", "mobilenet_manga", "--smoke-test", "--probe", "--max-concurrent", "1"),
        *("--data-dir", str(tmp_path / "data"), "--storage", str(tmp_path / "s")),
        *("--name", "probe", "--reports", str(tmp_path / "r")),
        env={**os.environ, **shared_ray},  # the test process's Ray head: no Ray start of its own
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = pd.read_parquet(tmp_path / "s" / "probe" / CONFIRM)
    probe = rows[rows["kind"] == "probe"]
    assert probe["model"].tolist() == ["mobilenet_v1_025"], rows
    p = probe.iloc[0]
    assert p["error"] == "" and p["trial_id"] == "" and p["probe_c"] in C_GRID
    assert 0 <= p["test_acc_ci_low"] <= p["test_acc"] <= p["test_acc_ci_high"] <= 1
    assert check_schema(pq.read_schema(tmp_path / "s" / "probe" / CONFIRM), CONFIRM) == []
    assert "the linear probe: the bar tuning must beat" in r.stdout
    assert "linear probe on frozen mobilenet_v1_025 features" in r.stdout
    page = (tmp_path / "r" / "probe" / "index.html").read_text()
    assert "The bar:" in page and "linear probe (frozen)" in page
