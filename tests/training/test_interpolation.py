"""Pretrained inputs resized as the weights expect (issue #14 item 5): the decoded-image cache is
keyed by (size, interpolation), so a backbone whose timm pretrained_cfg says bilinear gets
bilinear-resized pixels, decoded once per key; trials (cv folds too), confirmation runs and the
scoring of stored checkpoints train and score each model on its own filter's pixels, and
study.run decodes a second filter only when the space can build a model that needs it. No
weights are loaded (pretrained=False): the interpolation comes from the config alone."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from torch import nn

from study.data import load_split, open_dataset, prepare, store
from study.evaluation import command as evaluate
from study.evaluation import confirm_jobs, inference
from study.evaluation.confirm_jobs import Job, stored_models_job, train_job
from study.models import create_model, input_interpolation
from study.spaces.settings import SpaceSettings
from study.training import trial
from study.training.config import TrainConfig
from study.training.cv_trial import fold_data, run_trial_cv
from study.training.fit import fit
from study.tuning import trial_data

BILINEAR_ARCH = "timm/test_resnet"  # a tiny timm net whose pretrained_cfg says "bilinear"


@pytest.fixture
def manga(manga_tree: Path, tmp_path: Path):
    prepare("manga", source=manga_tree, data_dir=tmp_path / "data", seed=0)
    return open_dataset(tmp_path / "data", "manga")


def _source_pixels(ds, split: str, size: int, resample: Image.Resampling) -> np.ndarray:
    """The split's stored images resized here with PIL directly: what the cache should hold."""
    blobs = ds.read_images(["image"], split).column("image").to_pylist()
    out = []
    for blob in blobs:
        img = Image.open(io.BytesIO(blob)).convert("RGB")
        out.append(np.asarray(ImageOps.fit(img, (size, size), resample)).transpose(2, 0, 1))
    return np.stack(out)


def test_a_bilinear_backbone_gets_bilinear_pixels(manga) -> None:
    model = create_model(BILINEAR_ARCH, 7, pretrained=False)
    assert input_interpolation(model) == input_interpolation(BILINEAR_ARCH) == "bilinear"
    assert model.input_interpolation == "bilinear"  # recorded with its mean and std
    bilinear = load_split(manga, "train", 32, input_interpolation(BILINEAR_ARCH))
    bicubic = load_split(manga, "train", 32, input_interpolation("vanilla_cnn"))
    assert not np.array_equal(bilinear.images, bicubic.images)  # the same source images
    want = _source_pixels(manga, "train", 32, Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(bilinear.images, want)
    want = _source_pixels(manga, "train", 32, Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(bicubic.images, want)
    assert bilinear.paths == bicubic.paths and bilinear.labels.tolist() == bicubic.labels.tolist()


def test_the_cache_decodes_once_per_size_and_interpolation(manga) -> None:
    before = store.DECODE_COUNT["images"]
    n = len(load_split(manga, "val", 32, "bicubic").labels)
    load_split(manga, "val", 32, "bicubic")
    assert store.DECODE_COUNT["images"] - before == n
    load_split(manga, "val", 32, "bilinear")
    load_split(manga, "val", 32, "bilinear")
    assert store.DECODE_COUNT["images"] - before == 2 * n
    load_split(manga, "val", 40, "bilinear")
    assert store.DECODE_COUNT["images"] - before == 3 * n
    names = sorted(p.name for p in manga.cache_dir.iterdir())
    v = manga.version  # bicubic keeps the file name caches had before the key held a filter
    assert names == [
        f"{v}-32px-bilinear-val.npy",
        f"{v}-32px-val.npy",
        f"{v}-40px-bilinear-val.npy",
    ]


def test_an_unknown_interpolation_is_refused_before_decoding(manga) -> None:
    before = store.DECODE_COUNT["images"]
    with pytest.raises(ValueError, match="interpolation 'cubic': expected one of bicubic, bilin"):
        load_split(manga, "train", 32, "cubic")
    assert store.DECODE_COUNT["images"] == before and not manga.cache_dir.exists()


def test_the_test_split_is_scored_at_each_models_interpolation(manga, monkeypatch) -> None:
    """evaluate_on_test decodes the test split once per filter and feeds each model its own."""
    models = {
        "bilinear": create_model(BILINEAR_ARCH, 7, pretrained=False).eval(),
        "bicubic": create_model("vanilla_cnn", 7, width=4, depth=2).eval(),
    }
    monkeypatch.setattr(inference, "load_best_model", lambda _s, tid, _k, _d: (models[tid], None))
    root = Path(str(manga.root)).parent
    before = store.DECODE_COUNT["images"]
    out = inference.evaluate_on_test("unused", open_dataset(root, "manga"), list(models), 32, 0)
    n = len(manga.table("test"))
    assert store.DECODE_COUNT["images"] - before == 2 * n  # one decoding per filter
    device = inference.pick_device()
    for tid, model in models.items():
        probs = inference.probabilities(model, load_split(manga, "test", 32, tid), device)
        rows = out["predictions"][out["predictions"]["trial_id"] == tid]
        got = rows[[f"prob_{c}" for c in manga.classes]].to_numpy()
        np.testing.assert_allclose(got, probs, rtol=1e-5, atol=1e-6)


def test_evaluate_reads_each_models_filter_from_its_config(tmp_path: Path) -> None:
    """study.evaluate decodes a folder per filter before loading any weights: read from configs."""
    for tid, model in (("t1", BILINEAR_ARCH), ("t2", "vanilla_cnn")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "params.json").write_text(json.dumps({"model": model}))
    assert evaluate.interpolations(str(tmp_path), ["t1"], False) == ["bilinear"]
    assert evaluate.interpolations(str(tmp_path), ["t1", "t2"], False) == ["bicubic", "bilinear"]
    (tmp_path / "final_model").mkdir()
    (tmp_path / "final_model" / "model.pt").write_bytes(b"")  # not loaded: only its config is read
    (tmp_path / "final_model" / "final.json").write_text(json.dumps({"config": {"model": "x"}}))
    with pytest.raises(ValueError, match="unknown model 'x'"):
        evaluate.interpolations(str(tmp_path), [], True)
    (tmp_path / "final_model" / "final.json").write_text(json.dumps({"trial_id": "t1"}))
    with pytest.raises(ValueError, match="final.json: no 'config'"):
        evaluate.interpolations(str(tmp_path), [], True)


# ----------------------------------------------------------------------------- training


def _config(model: str, **extra) -> dict:
    options = {"pretrained": False} if model == BILINEAR_ARCH else {"width": 4, "depth": 2}
    return {
        "model": model,
        **options,
        "image_size": 32,
        "batch_size": 4,
        "max_epochs": 1,
        "compile": False,
        "seed": 3,
        **extra,
    }


def _settings(**kw) -> SpaceSettings:
    return SpaceSettings(dataset="manga", description="filters", image_size=32, **kw)


def _spy(monkeypatch) -> list[tuple[str, np.ndarray]]:
    """The images each training epoch and each validation of study.training.trial are given."""
    seen: list[tuple[str, np.ndarray]] = []
    real_train, real_val = trial.train_epoch, trial.evaluate_val

    def train_epoch(t, data, *args):
        seen.append(("train", data.train.images))
        return real_train(t, data, *args)

    def evaluate_val(model, data, *args):
        seen.append(("val", data.val.images))
        return real_val(model, data, *args)

    monkeypatch.setattr(trial, "train_epoch", train_epoch)
    monkeypatch.setattr(trial, "evaluate_val", evaluate_val)
    return seen


def test_a_trial_trains_and_validates_on_its_models_pixels(manga, monkeypatch) -> None:
    """study.run's data: bicubic train/val with a bilinear copy in `resized`; the bilinear-cfg
    backbone trains and validates on the copy, a from-scratch CNN on the bicubic images."""
    data = trial_data.trial_data(manga, _settings(), ["bicubic", "bilinear"], 0)
    copy = data.resized["bilinear"]
    assert (data.interpolation, copy.interpolation) == ("bicubic", "bilinear")
    np.testing.assert_array_equal(
        copy.train.images, load_split(manga, "train", 32, "bilinear").images
    )
    np.testing.assert_array_equal(data.train.images, load_split(manga, "train", 32).images)
    seen, metrics = _spy(monkeypatch), []
    for model, want in ((BILINEAR_ARCH, copy), ("vanilla_cnn", data)):
        seen.clear()
        metrics.clear()
        cfg = TrainConfig.from_config(_config(model))
        device = inference.pick_device()
        trial.run_trial(cfg, data, lambda m, _d: metrics.append(m), list, device=device)
        assert [k for k, _ in seen] == ["train", "val"] and len(metrics) == 1
        assert seen[0][1] is want.train.images and seen[1][1] is want.val.images, model
        assert trial.setup_trial(cfg, data, inference.pick_device()).data is want


def test_a_missing_filter_is_a_clear_error(manga) -> None:
    bicubic_only = trial_data.trial_data(manga, _settings(), ["bicubic"], 0)
    cfg = TrainConfig.from_config(_config(BILINEAR_ARCH))
    with pytest.raises(
        ValueError,
        match="model 'timm/test_resnet' expects inputs resized with "
        "'bilinear'; the trial data holds bicubic only",
    ):
        trial.setup_trial(cfg, bicubic_only, inference.pick_device())


def test_cv_folds_train_each_fold_on_its_models_pixels(manga, monkeypatch) -> None:
    """cv_folds tuning: train+val pooled and split into folds for every filter alike."""
    data = trial_data.trial_data(manga, _settings(cv_folds=2), ["bicubic", "bilinear"], 0)
    copy = data.resized["bilinear"]
    assert data.folds is not None and np.array_equal(copy.folds, data.folds)
    pool = np.concatenate([load_split(manga, s, 32, "bilinear").images for s in ("train", "val")])
    np.testing.assert_array_equal(copy.train.images, pool)
    folds = fold_data(data)
    for f, fd in enumerate(folds):  # each fold's copy: the same rows of the bilinear pool
        np.testing.assert_array_equal(fd.resized["bilinear"].train.images, pool[data.folds != f])
        np.testing.assert_array_equal(fd.resized["bilinear"].val.images, pool[data.folds == f])
    seen = _spy(monkeypatch)
    cfg = TrainConfig.from_config(_config(BILINEAR_ARCH))
    run_trial_cv(cfg, data, lambda m, _d: None, list, device=inference.pick_device())
    got = [images for _, images in seen]
    want = [
        a
        for fd in folds
        for a in (fd.resized["bilinear"].train.images, fd.resized["bilinear"].val.images)
    ]
    assert len(got) == len(want) == 4
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_the_space_decides_which_filters_are_decoded(manga) -> None:
    """study.run decodes a second copy only when the space can build a model that needs it."""

    def either(t):
        return {"model": t.suggest_categorical("model", ["vanilla_cnn", BILINEAR_ARCH])}

    def cnn(t):
        return {"model": "vanilla_cnn", "lr": t.suggest_float("lr", 1e-3, 1e-1, log=True)}

    settings = _settings()
    assert trial_data.input_filters(either, settings, {}) == ["bicubic", "bilinear"]
    assert trial_data.input_filters(cnn, settings, {}) == ["bicubic"]
    # a model from the constants (e.g. --init-from's source architecture) counts too
    assert trial_data.input_filters(lambda t: {}, settings, {"model": BILINEAR_ARCH}) == [
        "bilinear"
    ]
    before = store.DECODE_COUNT["images"]
    data = trial_data.trial_data(manga, settings, trial_data.input_filters(cnn, settings, {}), 0)
    assert data.resized == {} and data.interpolation == "bicubic"
    n = len(manga.table("train")) + len(manga.table("val"))
    assert store.DECODE_COUNT["images"] - before == n  # no bilinear decoding
    assert not any("bilinear" in p.name for p in manga.cache_dir.iterdir())


def test_confirmation_runs_train_and_score_on_their_models_pixels(manga, monkeypatch) -> None:
    """A confirmation run (study.evaluation.confirm_jobs, called here without Ray) decodes train,
    val and
    test with its model's filter; fit refuses pixels of another filter."""
    arrays: list[np.ndarray] = []
    real_fit, real_probs = fit, inference.probabilities

    def spy_fit(config, train, *args):
        arrays.append(train.images)
        return real_fit(config, train, *args)

    def spy_probs(model, arr, *args):
        arrays.append(arr.images)
        return real_probs(model, arr, *args)

    monkeypatch.setattr("study.evaluation.confirm_jobs.fit", spy_fit)
    monkeypatch.setattr("study.evaluation.confirm_jobs.probabilities", spy_probs)
    root = str(Path(str(manga.root)).parent)
    row = train_job(
        open_dataset(root, "manga"), 32, Job("seed", "t1", _config(BILINEAR_ARCH), 1), None, "none"
    )
    assert row["error"] == "" and len(arrays) == 3
    for got, split in zip(arrays, ("train", "val", "test"), strict=True):
        np.testing.assert_array_equal(got, load_split(manga, split, 32, "bilinear").images)
    train = load_split(manga, "train", 32)  # bicubic
    with pytest.raises(ValueError, match="expects inputs resized with 'bilinear'"):
        real_fit(_config(BILINEAR_ARCH), train, manga.classes, 1)


def test_stored_checkpoints_are_scored_on_their_models_pixels(manga, monkeypatch) -> None:
    """The top trials' checkpoints and their ensemble: each model sees its own filter's pixels."""
    models = {
        "bilinear": create_model(BILINEAR_ARCH, 7, pretrained=False).eval(),
        "bicubic": create_model("vanilla_cnn", 7, width=4, depth=2).eval(),
    }
    archs = {"bilinear": BILINEAR_ARCH, "bicubic": "vanilla_cnn"}
    cfgs = {tid: TrainConfig.from_config(_config(arch)) for tid, arch in archs.items()}
    monkeypatch.setattr(confirm_jobs, "load_best_model", lambda _s, t, _k, _d: (models[t], cfgs[t]))
    seen: list[tuple[nn.Module, np.ndarray]] = []
    real_probs = inference.probabilities

    def spy_probs(model, arr, *args):
        seen.append((model, arr.images))
        return real_probs(model, arr, *args)

    monkeypatch.setattr(confirm_jobs, "probabilities", spy_probs)
    root = str(Path(str(manga.root)).parent)
    rows = stored_models_job(
        "unused", open_dataset(root, "manga"), 32, list(models), list(models), "none", {}
    )
    assert [r["kind"] for r in rows] == ["tuning", "tuning", "ensemble"]
    # val then test, for each model in turn (the ensemble averages these probabilities)
    assert [m for m, _ in seen] == [models["bilinear"]] * 2 + [models["bicubic"]] * 2
    for (model, images), split in zip(seen, ["val", "test"] * 2, strict=True):
        tid = "bilinear" if model is models["bilinear"] else "bicubic"
        np.testing.assert_array_equal(images, load_split(manga, split, 32, tid).images)
