"""Pretrained inputs resized as the weights expect (issue #14 item 5): the decoded-image cache is
keyed by (size, interpolation), so a backbone whose timm pretrained_cfg says bilinear gets
bilinear-resized pixels, decoded once per key. No weights are loaded (pretrained=False): the
interpolation comes from the config alone."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from study import evaluate, inference
from study.data import load_split, open_dataset, prepare, store
from study.models import create_model, input_interpolation

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
    out = inference.evaluate_on_test("unused", str(root), "manga", list(models), 32, 0)
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
    (tmp_path / "final_model" / "final.json").write_text(json.dumps({"config": {"model": "x"}}))
    with pytest.raises(ValueError, match="unknown model 'x'"):
        evaluate.interpolations(str(tmp_path), [], True)
    (tmp_path / "final_model" / "final.json").write_text(json.dumps({"trial_id": "t1"}))
    with pytest.raises(ValueError, match="final.json: no 'config'"):
        evaluate.interpolations(str(tmp_path), [], True)
