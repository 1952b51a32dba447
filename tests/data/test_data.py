from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import MANGA_CLASSES, MANGA_DIR, face_png, requires_manga
from PIL import Image

from study.data import (
    Augment,
    AugmentConfig,
    NotPreparedError,
    PrepareError,
    load_split,
    open_dataset,
    prepare,
    store,
)
from study.data import __main__ as data_cli
from study.data.decode import decode_rgb


def test_manga_layout_fixture_names_with_spaces(manga_tree: Path, tmp_path: Path) -> None:
    res = prepare("manga", source=manga_tree, data_dir=tmp_path / "d")
    t = res.table
    assert len(t) == 28 and sorted(t["label"].unique()) == list(MANGA_CLASSES)
    assert any(" - Copy (" in p for p in t["path"])
    assert set(t["split"]) == {"train", "val", "test"}
    ds = open_dataset(tmp_path / "d", "manga")
    assert ds.manifest["counts"] == t["split"].value_counts().to_dict()


def test_manga_zip_equals_folder(manga_tree: Path, tmp_path: Path) -> None:
    files = sorted(f for f in manga_tree.rglob("*") if f.is_file())  # listed before the zip exists
    zpath = tmp_path / "manga.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in files:
            zf.write(f, f.relative_to(manga_tree).as_posix())
    a = prepare("manga", source=manga_tree, data_dir=tmp_path / "a")
    b = prepare("manga", source=zpath, data_dir=tmp_path / "b")
    cols = ["path", "label", "split", "sha256"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols])
    assert a.manifest["version"] == b.manifest["version"]


@requires_manga
def test_real_manga(tmp_path: Path, capsys) -> None:
    assert (
        data_cli.main(["prepare", "manga", "--source", str(MANGA_DIR), "--data-dir", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "images per class x split" in out and "skipped files: 0" in out
    readme = (MANGA_DIR.parent / "README.md").read_text()
    ds = open_dataset(tmp_path, "manga")
    t = ds.table()
    assert len(t) == 365 and t["label"].nunique() == 7
    for cls, n in t["label"].value_counts().items():
        assert f"| {cls} | {n} |" in readme  # per-class counts as the README states them
    assert set(t["split"]) == {"train", "val", "test"}
    assert t.groupby("sha256")["split"].nunique().max() == 1
    # stratified: every class in every split, roughly 70/15/15
    assert (pd.crosstab(t["label"], t["split"]) > 0).all().all()
    assert abs((t["split"] == "train").mean() - 0.70) < 0.03


def test_ferg_layout_by_group(ferg_tree: Path, tmp_path_factory) -> None:
    # the data dir lies outside the source: prepare refuses a source that contains its output
    res = prepare("ferg", source=ferg_tree.parent, data_dir=tmp_path_factory.mktemp("d"))
    t = res.table
    assert res.manifest["split_rule"] == "by-group"
    assert sorted(t["group"].unique()) == ["aia", "bonnie", "jules", "malcolm", "mery", "ray"]
    for row in t.itertuples():  # label and character parsed from the path
        assert f"/{row.group}/{row.group}_{row.label}/" in f"/{row.path}"
    assert t.groupby("group")["split"].nunique().max() == 1  # no character in two splits
    assert set(t["split"]) == {"train", "val", "test"}


def test_stratified_split_is_seeded_and_keeps_duplicates_together(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for ci, c in enumerate(("a", "b")):
        for i in range(20):  # distinct seeds: hash() of a str changes per process and collided
            face_png(root / c / f"{i}.png", seed=100 * ci + i)
    shutil.copy(root / "a" / "0.png", root / "a" / "0_copy.png")  # exact duplicate
    r1 = prepare("folder", source=root, data_dir=tmp_path / "x", seed=1)
    r2 = prepare("folder", source=root, data_dir=tmp_path / "y", seed=1)
    r3 = prepare("folder", source=root, data_dir=tmp_path / "z", seed=2)
    assert r1.table["split"].tolist() == r2.table["split"].tolist()
    assert r1.table["split"].tolist() != r3.table["split"].tolist()
    for r in (r1, r3):
        t = r.table.set_index("path")
        assert t.loc["a/0.png", "split"] == t.loc["a/0_copy.png", "split"]
    assert r1.manifest["duplicates"] == [["a/0.png", "a/0_copy.png"]]


def _bad_tree(root: Path) -> dict[str, str]:
    """Every kind of bad file next to good ones; returns path -> expected words of the reason."""
    for c in ("happy", "sad"):
        for i in range(4):
            face_png(root / c / f"ok{i}.png", seed=i + (10 if c == "sad" else 0))
    (root / "happy" / "empty.png").write_bytes(b"")
    (root / "happy" / "notes.txt").write_text("not an image")
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(buf, "PNG")
    (root / "sad" / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    face_png(root / "sad" / "tiny.png", seed=3, size=8)
    Image.new("CMYK", (48, 48)).save(root / "sad" / "cmyk.jpg")
    (root / "angry").mkdir()
    return {
        "happy/empty.png": "empty",
        "happy/notes.txt": "not an image",
        "sad/truncated.png": "cannot be decoded",
        "sad/tiny.png": "too small",
        "sad/cmyk.jpg": "unsupported image mode CMYK",
        "angry/": "no images",
    }


def test_bad_files_are_named_with_reasons_and_nothing_written(tmp_path: Path, capsys) -> None:
    expected = _bad_tree(tmp_path / "src")
    with pytest.raises(PrepareError) as e:
        prepare("folder", source=tmp_path / "src", data_dir=tmp_path / "d")
    msg = str(e.value)
    for path, words in expected.items():
        line = next(line for line in msg.splitlines() if line.strip().startswith(path + ":"))
        assert words in line, (path, line)
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())
    # the CLI exits non-zero with the same list
    rc = data_cli.main(
        ["prepare", "folder", "--source", str(tmp_path / "src"), "--data-dir", str(tmp_path / "d")]
    )
    assert rc == 2 and "sad/tiny.png" in capsys.readouterr().err
    # --skip-bad succeeds and records them in the manifest
    res = prepare("folder", source=tmp_path / "src", data_dir=tmp_path / "d", skip_bad=True)
    assert len(res.table) == 8
    skipped = json.loads((res.out_dir / "manifest.json").read_text())["skipped"]
    assert {s["path"] for s in skipped} == set(expected)


def test_modes_convert_to_rgb_the_same_way(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    pal = Image.new("P", (40, 40), 3)
    i16 = Image.fromarray(np.full((40, 40), 65535, np.uint16))
    for img, expect in ((rgba, (255, 255, 255)), (i16, (255, 255, 255)), (pal.convert("L"), None)):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out = decode_rgb(buf.getvalue())
        assert out.mode == "RGB" and out.size == (40, 40)
        if expect:
            assert out.getpixel((0, 0)) == expect


def test_existing_other_version_is_not_overwritten(manga_tree: Path, tmp_path: Path) -> None:
    prepare("manga", source=manga_tree, data_dir=tmp_path, seed=0)
    assert prepare("manga", source=manga_tree, data_dir=tmp_path, seed=0).reused
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare("manga", source=manga_tree, data_dir=tmp_path, seed=5)
    assert prepare("manga", source=manga_tree, data_dir=tmp_path, seed=5, overwrite=True)


def test_tensor_cache_decodes_once(manga_tree: Path, tmp_path: Path) -> None:
    prepare("manga", source=manga_tree, data_dir=tmp_path)
    ds = open_dataset(tmp_path, "manga")
    before = store.DECODE_COUNT["images"]
    a = load_split(ds, "train", 32)
    n = len(a.labels)
    assert a.images.shape == (n, 3, 32, 32) and a.images.dtype == np.uint8
    b = load_split(ds, "train", 32)
    assert store.DECODE_COUNT["images"] - before == n  # second load hit the cache
    np.testing.assert_array_equal(a.images, b.images)
    assert a.paths == ds.table("train")["path"].tolist()
    assert a.labels.tolist() == ds.table("train")["label_id"].tolist()


def test_not_prepared_message_names_command(tmp_path: Path) -> None:
    with pytest.raises(NotPreparedError, match="python -m study.data prepare manga --source"):
        open_dataset(tmp_path, "manga")


def test_augment_shapes_determinism_and_identity() -> None:
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    aug = Augment(AugmentConfig.from_strength(1.0))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    y1, y2 = aug(x, train=True, generator=g1), aug(x, train=True, generator=g2)
    assert y1.shape == x.shape and torch.equal(y1, y2) and torch.isfinite(y1).all()
    ident = Augment(AugmentConfig(flip=0.0))
    z = ident(x, train=True)
    assert torch.allclose(z, aug(x, train=False), atol=1e-5)  # no-op config only normalises
    assert not torch.allclose(y1, z)
    flip = Augment(AugmentConfig(flip=1.0))(x, train=True)
    assert torch.allclose(flip, z.flip(-1), atol=1e-4)
    with pytest.raises(ValueError, match="crop"):
        AugmentConfig(crop=2.0)
