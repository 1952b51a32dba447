"""Split rules. Splits are decided once, at prepare time, and stored with the data set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
ClassCounts = dict[str, dict[str, int]]  # class -> split -> images


class EmptySplitsError(ValueError):
    """Some class would have no image in train, val or test: its model could not be validated or
    tested on it (a study with an empty val split errs in every trial). Names each such class
    with its counts; `lacking` maps it to the splits it would have no image in."""

    def __init__(self, name: str, counts: ClassCounts, rule: str, seed: int, note: str = ""):
        self.lacking = empty_splits(counts)
        lines = [
            f"  {c}: {', '.join(splits)} would be empty "
            f"({', '.join(f'{s} {counts[c][s]}' for s in SPLITS)})"
            for c, splits in self.lacking.items()
        ]
        super().__init__(
            f"prepare {name}: {len(lines)} class(es) would have no image in some split (split rule "
            f"{rule}, seed {seed}); nothing was written.\n"
            + "\n".join(lines)
            + "\n"
            + note
            + "Every class needs an image in train, val and test to be trained, validated and "
            "tested on. Add images to these classes (a class needs at least 3 distinct ones), try "
            "another --seed or --split rule, or pass --allow-empty-splits to prepare anyway (the "
            "manifest then records which class lacks which split)."
        )


def class_counts(labels: pd.Series, splits: pd.Series, classes: Sequence[str]) -> ClassCounts:
    """Images per class and split, zeros included (a class may have no image at all)."""
    table = pd.crosstab(labels, splits).reindex(
        index=list(classes), columns=list(SPLITS), fill_value=0
    )
    return {c: {s: int(table.at[c, s]) for s in SPLITS} for c in classes}


def empty_splits(counts: ClassCounts) -> dict[str, list[str]]:
    """The classes that lack some split, each with the splits it has no image in."""
    return {c: [s for s in SPLITS if n[s] == 0] for c, n in counts.items() if 0 in n.values()}


def check_listed(name: str, listed: pd.DataFrame, rule: str, seed: int) -> None:
    """Refuse, before any file is read, the classes too small for three splits whatever their
    bytes hold: fewer than 3 listed images (columns label, group) can never fill train, val and
    test. Larger classes are checked once the bytes are known (duplicates share a split), when
    the real splits are drawn; the counts named here are the rule's on the listing."""
    sizes = listed["label"].value_counts()
    few = sorted(sizes[sizes < len(SPLITS)].index)
    if not few:
        return
    # every file its own unit here: the sha256 is not known before the bytes are read
    listed = listed.assign(sha256=np.arange(len(listed)).astype(str))
    counts = class_counts(listed["label"], assign_splits(listed, rule, seed), few)
    raise EmptySplitsError(name, counts, rule, seed)


def _units(df: pd.DataFrame, by_group: bool) -> pd.Series:
    """Rows that must share a split: exact duplicates (same sha256), by-group: whole characters.

    Union-find over sha256 (and group) so that a duplicate pair never straddles two splits.
    """
    parent = list(range(len(df)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keys = ["sha256", "group"] if by_group else ["sha256"]
    for key in keys:
        for idx in df.groupby(key, sort=False).indices.values():
            for j in idx[1:]:
                parent[find(j)] = find(idx[0])
    return pd.Series([find(i) for i in range(len(df))], index=df.index)


def _cut(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Sizes of train/val/test for n units; val and test get at least one unit when n >= 3."""
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    return [n - n_val - n_test, n_val, n_test]


def assign_splits(
    df: pd.DataFrame,
    rule: str,
    seed: int,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> pd.Series:
    """Return the split of every row of `df` (columns label, group, sha256)."""
    if rule not in ("stratified", "by-group"):
        raise ValueError(f"--split {rule!r}: expected 'stratified' or 'by-group'")
    rng = np.random.default_rng(seed)
    unit = _units(df, by_group=rule == "by-group")
    split = pd.Series("", index=df.index, dtype=object)
    if rule == "by-group":
        groups = sorted(df["group"].unique())
        if len(groups) < 3 or "" in groups:
            raise ValueError(
                f"--split by-group needs at least 3 named groups (characters); found {len(groups)}"
            )
        order = [groups[i] for i in rng.permutation(len(groups))]
        sizes = _cut(len(order), fractions)
        bounds = np.cumsum([0, *sizes])
        for s, name in enumerate(SPLITS):
            split[df["group"].isin(order[bounds[s] : bounds[s + 1]])] = name
        # a duplicate image shared by two characters follows the first one's split
        return split.groupby(unit).transform("first")
    # stratified: shuffle the units of each class and cut them by the fractions
    first = df.groupby(unit, sort=True).head(1)
    for _, rows in first.groupby("label", sort=True):
        units = rows.index.map(unit).to_numpy()
        units = units[rng.permutation(len(units))]
        bounds = np.cumsum([0, *_cut(len(units), fractions)])
        for s, name in enumerate(SPLITS):
            split[unit.isin(units[bounds[s] : bounds[s + 1]])] = name
    return split
