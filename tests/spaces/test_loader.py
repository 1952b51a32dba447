"""A space file of the user's own is loaded without writing anything beside it."""

from __future__ import annotations

import sys

from study.spaces.loader import load_space

SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="mine")
def space(trial):
    return {"model": "vanilla_cnn", "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}
"""


def test_a_users_space_file_gets_no_pycache_beside_it(tmp_path, monkeypatch) -> None:
    # Python's default, which PYTHONDONTWRITEBYTECODE=1 (set on some machines) turns off
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = tmp_path / "mine.py"
    path.write_text(SPACE)
    assert load_space(str(path)).name == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.py"]
    assert sys.dont_write_bytecode is False  # as it was
