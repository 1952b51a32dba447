"""The seed study's named variants as a fixed grid on FERG-DB, to reproduce its results table."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import optuna

from . import seed_table_manga

GRID = seed_table_manga.GRID
SETTINGS = replace(seed_table_manga.SETTINGS, dataset="ferg", max_epochs=30)


def space(trial: optuna.Trial) -> dict[str, Any]:
    return {**seed_table_manga.space(trial), "class_weights": False}  # FERG is balanced
