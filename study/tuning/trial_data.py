"""What every trial is handed once (`tune.with_parameters`): the prepared splits, the input
filters the searched models need, and the cross-validation folds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd

from study.data import load_split
from study.data.folds import fold_ids
from study.data.store import concat
from study.models import input_interpolation
from study.spaces.cover import cover_space
from study.training.config import TrainConfig
from study.training.steps import TrialData


def tuning_data(data, ds, settings, seed: int):
    """The data every trial gets: for `cv_folds` tuning, train+val with each image's fold."""
    if not settings.cv_folds:
        return data

    folds = fold_ids(pooled_meta(ds), ds.manifest["split_rule"], settings.cv_folds, seed)
    return replace(data, train=concat(data.train, data.val), folds=folds)


def input_filters(fn, settings, constants: dict[str, Any]) -> list[str]:
    """The resize filters the space's models expect (study.models.input_interpolation of each
    model a covering trial builds: every categorical choice at least once), bicubic first."""
    configs = cover_space(fn, settings).configs
    models = {TrainConfig.from_config({**constants, **c, "seed": 0}).model for c in configs}
    return sorted({input_interpolation(m) for m in models}, key=lambda f: (f != "bicubic", f))


def trial_data(ds, settings, filters: list[str], seed: int):
    """What every trial gets: train and val resized with filters[0], and with each other filter
    in its `resized` (a trial trains on its model's: TrialData.for_model); cv_folds: pooled."""
    copies = []
    for f in filters:
        train, val = (load_split(ds, split, settings.image_size, f) for split in ("train", "val"))
        data = TrialData(train, val, ds.classes, interpolation=f)
        copies.append(tuning_data(data, ds, settings, seed))  # cv_folds: in folds
    return replace(copies[0], resized={d.interpolation: d for d in copies[1:]})


def pooled_meta(ds) -> pd.DataFrame:
    """label, group, sha256 of train then val: the order of `load_split` for each."""
    cols = ["label", "group", "sha256"]
    return pd.concat([ds.table("train")[cols], ds.table("val")[cols]], ignore_index=True)
