"""`prepare` refuses splits that cannot validate or test every class, and leaves out images whose
bytes sit under two classes (issue #27.8). Tiny class folders, no Ray."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import face_png

from study.data import EmptySplitsError, open_dataset, prepare
from study.data import __main__ as data_cli

# the module, not the function `study.data.prepare` that the package exports under its name
prepare_module = importlib.import_module("study.data.prepare")


def _classes(root: Path, sizes: dict[str, int]) -> Path:
    """One folder per class with `n` distinct small images each."""
    for c, (cls, n) in enumerate(sizes.items()):
        for i in range(n):
            face_png(root / cls / f"{i}.png", seed=1000 * c + i, size=32)
    return root


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded before the splits were checked")

    monkeypatch.setattr(prepare_module, "inspect_image", refuse)


def _cli(*args: str) -> int:
    return data_cli.main(["prepare", "folder", "-q", *args])


def test_one_image_per_class_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    src = _classes(tmp_path / "src", {"a": 1, "b": 1, "c": 1})
    _no_decoding(monkeypatch)
    with pytest.raises(EmptySplitsError) as e:
        prepare("folder", source=src, data_dir=tmp_path / "d", out_name="mine")
    msg = str(e.value)
    assert msg.startswith("prepare mine:") and "nothing was written" in msg
    for cls in "abc":
        assert f"  {cls}: val, test would be empty (train 1, val 0, test 0)" in msg
    assert "--seed" in msg and "--allow-empty-splits" in msg
    assert e.value.lacking == {c: ["val", "test"] for c in "abc"}
    assert not (tmp_path / "d").exists()
    # the CLI: exit 2, the same message, no traceback
    assert _cli("--source", str(src), "--data-dir", str(tmp_path / "d")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: prepare folder:") and "a: val, test would be empty" in err
    assert not (tmp_path / "d").exists()


def test_a_class_with_2_of_42_images_is_refused(tmp_path: Path) -> None:
    src = _classes(tmp_path / "src", {"a": 20, "b": 20, "c": 2})
    with pytest.raises(EmptySplitsError) as e:
        prepare("folder", source=src, data_dir=tmp_path / "d")
    assert "  c: val, test would be empty (train 2, val 0, test 0)" in str(e.value)
    assert e.value.lacking == {"c": ["val", "test"]}  # a and b are in every split
    assert not (tmp_path / "d").exists()


def test_units_not_files_decide(tmp_path: Path) -> None:
    """Three files of which two are the same bytes are two units (duplicates share a split):
    known only once the bytes are read, refused then, still before anything is written."""
    src = _classes(tmp_path / "src", {"a": 10, "b": 10, "c": 2})
    shutil.copy(src / "c" / "0.png", src / "c" / "0_copy.png")
    with pytest.raises(EmptySplitsError, match=r"  c: val, test would be empty \(train 3,"):
        prepare("folder", source=src, data_dir=tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_by_group_class_in_two_characters_is_refused(ferg_tree: Path, tmp_path_factory) -> None:
    """by-group puts whole characters in one split: an emotion only two characters show cannot
    be in all three splits, however many images it has."""
    for char in ("jules", "malcolm", "mery", "ray"):
        shutil.rmtree(ferg_tree / char / f"{char}_fear")
    with pytest.raises(EmptySplitsError) as e:
        prepare("ferg", source=ferg_tree.parent, data_dir=tmp_path_factory.mktemp("d"))
    assert list(e.value.lacking) == ["fear"] and "(split rule by-group, seed 0)" in str(e.value)


def test_allow_empty_splits_prepares_and_records_what_is_lost(tmp_path: Path, capsys) -> None:
    src = _classes(tmp_path / "src", {"a": 20, "b": 20, "c": 2})
    res = prepare("folder", source=src, data_dir=tmp_path / "d", allow_empty_splits=True)
    assert res.manifest["empty_splits"] == {"c": ["val", "test"]}
    assert open_dataset(tmp_path / "d", "folder").manifest["empty_splits"] == {"c": ["val", "test"]}
    assert "classes lacking a split (--allow-empty-splits): 1" in res.summary
    assert "  c: no val, test image" in res.summary
    counts = res.manifest["class_counts"]["c"]
    assert counts == {"train": 2, "val": 0, "test": 0}
    # the CLI flag; the summary it prints names the loss
    d2 = str(tmp_path / "d2")
    assert _cli("--source", str(src), "--data-dir", d2, "--allow-empty-splits") == 0
    assert "  c: no val, test image" in capsys.readouterr().out
    # without the flag the same source is refused, even where it was prepared before
    with pytest.raises(EmptySplitsError):
        prepare("folder", source=src, data_dir=tmp_path / "d")


def test_a_label_conflict_is_named_and_left_out_of_every_split(tmp_path: Path, capsys) -> None:
    src = _classes(tmp_path / "src", {"a": 10, "b": 10})
    shutil.copy(src / "a" / "3.png", src / "b" / "same_as_a3.png")
    res = prepare("folder", source=src, data_dir=tmp_path / "d")
    written = pd.read_parquet(tmp_path / "d" / "folder" / "images.parquet", columns=["path"])
    paths = set(written["path"])
    assert "a/3.png" not in paths and "b/same_as_a3.png" not in paths and len(paths) == 19
    (conflict,) = res.manifest["label_conflicts"]
    assert conflict["paths"] == ["a/3.png", "b/same_as_a3.png"]
    assert conflict["class_of"] == {"a/3.png": "a", "b/same_as_a3.png": "b"}
    assert res.manifest["conflicts_kept"] is False and res.manifest["duplicates"] == []
    lines = res.summary.splitlines()
    assert (
        "label conflicts (same bytes under two or more classes): 1, left out of every split"
        in lines
    )
    assert "  a/3.png (a) = b/same_as_a3.png (b)" in lines
    assert _cli("--source", str(src), "--data-dir", str(tmp_path / "d2")) == 0
    assert "  a/3.png (a) = b/same_as_a3.png (b)" in capsys.readouterr().out


def test_keep_conflicts_keeps_them_in_one_split(tmp_path: Path, capsys) -> None:
    src = _classes(tmp_path / "src", {"a": 10, "b": 10})
    shutil.copy(src / "a" / "3.png", src / "b" / "same_as_a3.png")
    res = prepare("folder", source=src, data_dir=tmp_path / "d", keep_conflicts=True)
    t = pd.read_parquet(tmp_path / "d" / "folder" / "images.parquet", columns=["path", "split"])
    kept = t[t["path"].isin(["a/3.png", "b/same_as_a3.png"])]
    assert len(t) == 21 and len(kept) == 2 and kept["split"].nunique() == 1
    assert res.manifest["conflicts_kept"] is True and len(res.manifest["label_conflicts"]) == 1
    assert "label conflicts (same bytes under two or more classes): 1, kept (--keep-conflicts)" in (
        res.summary
    )
    assert _cli("--source", str(src), "--data-dir", str(tmp_path / "d2"), "--keep-conflicts") == 0
    assert "kept (--keep-conflicts)" in capsys.readouterr().out


def test_a_class_emptied_by_conflicts_is_refused_naming_them(tmp_path: Path) -> None:
    src = _classes(tmp_path / "src", {"a": 10, "b": 10})
    (src / "c").mkdir()
    for i in range(3):  # every image of c is also one of a's
        shutil.copy(src / "a" / f"{i}.png", src / "c" / f"{i}.png")
    with pytest.raises(EmptySplitsError) as e:
        prepare("folder", source=src, data_dir=tmp_path / "d")
    msg = str(e.value)
    assert "  c: train, val, test would be empty (train 0, val 0, test 0)" in msg
    assert "3 label conflict(s)" in msg and "--keep-conflicts" in msg
