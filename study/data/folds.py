"""Cross-validation folds of train+val that respect the data set's split rule.

The units that must not straddle two folds are the split rule's own (`study.data.splits._units`):
exact duplicates (same sha256) always, and whole characters for `by-group` data sets (FERG), so a
fold never validates on a character it trained on. Folds are stratified by class as far as the
units allow (scikit-learn's StratifiedGroupKFold). The test split is never part of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.data.splits import _units


def fold_ids(meta: pd.DataFrame, rule: str, k: int, seed: int, what: str = "folds") -> np.ndarray:
    """The fold (0..k-1) of every row of `meta` (columns label, group, sha256; train then val).

    A ValueError names `what` when k folds are impossible (fewer units than folds)."""
    if k < 2:
        raise ValueError(f"{what} {k}: expected an integer >= 2")
    meta = meta.reset_index(drop=True)
    units = _units(meta, by_group=rule == "by-group")
    n_units = units.nunique()
    if n_units < k:
        # a duplicate image shared by two characters ties them into one unit, as in the splits
        kind = "separable characters (groups)" if rule == "by-group" else "distinct images"
        raise ValueError(
            f"{what} {k}: train+val has only {n_units} {kind} (split rule {rule}); "
            f"at most {n_units} folds"
        )
    out = np.full(len(meta), -1, dtype=np.int64)
    # imported here: scikit-learn takes ~2 s to import, and every driver imports this module
    from sklearn.model_selection import StratifiedGroupKFold

    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, held) in enumerate(cv.split(np.zeros(len(meta)), meta["label"], units)):
        out[held] = i
    return out


def fold_sizes(ids: np.ndarray, k: int) -> list[int]:
    return np.bincount(ids, minlength=k).tolist()
