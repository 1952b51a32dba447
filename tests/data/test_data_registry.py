"""Data sets found by file: a new data set is one new file."""

from __future__ import annotations

import numpy as np

from study.spaces.settings import SpaceSettings

SETTINGS = SpaceSettings(dataset="toon", description="unit", max_epochs=4, grace_period=1)


# ------------------------------------------------------------ data sets found by file


def test_a_new_data_set_is_one_new_file(tmp_path, monkeypatch) -> None:
    from study.data import prepare, registry

    # a package of data-set files in place of study/data/sets (one file, registering itself)
    (tmp_path / "my_sets").mkdir()
    (tmp_path / "my_sets" / "__init__.py").write_text("")
    (tmp_path / "my_sets" / "shapes.py").write_text(
        "from study.data.registry import DatasetSpec, register_dataset\n"
        "from study.data.sources import read_class_folders\n"
        "register_dataset(DatasetSpec(name='shapes', description='mine',\n"
        "    reader=lambda src, seed: read_class_folders(src, ('a', 'b'))))\n"
    )
    (tmp_path / "my_sets" / "_helpers.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_found", set())
    monkeypatch.setattr(registry, "SETS", "my_sets")
    assert "shapes" in registry.list_datasets()
    rng = np.random.default_rng(0)
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "src" / cls / f"{i}.png")
    result = prepare("shapes", source=str(tmp_path / "src"), data_dir=tmp_path / "data", seed=0)
    assert sorted(result.manifest["classes"]) == ["a", "b"]


def test_the_shipped_data_sets_are_found_by_file() -> None:
    from study.data import get_dataset, list_datasets

    assert {"manga", "ferg", "toon", "folder"} <= set(list_datasets())
    assert get_dataset("toon").classes == get_dataset("ferg").classes  # cross-style needs it
    assert get_dataset("ferg").default_split == "by-group"
