"""`prepare` leaves out images whose bytes sit under two classes (issue #27.8). Tiny class
folders, no Ray."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from conftest import face_png

from study.data import __main__ as data_cli
from study.data import prepare


def _classes(root: Path, sizes: dict[str, int]) -> Path:
    """One folder per class with `n` distinct small images each."""
    for c, (cls, n) in enumerate(sizes.items()):
        for i in range(n):
            face_png(root / cls / f"{i}.png", seed=1000 * c + i, size=32)
    return root


def _cli(*args: str) -> int:
    return data_cli.main(["prepare", "folder", "-q", *args])


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
