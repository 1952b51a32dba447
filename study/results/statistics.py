"""Metrics, the trial ranking and the chance baseline shared by training, tuning, evaluation and
the report (numpy and pandas only: the report imports this without Ray or torch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


def confusion_counts(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    for name, v in (("labels", labels), ("preds", preds)):
        out = v[(v < 0) | (v >= num_classes)]
        if out.size:  # bincount would count an out-of-range class in another cell, silently
            raise ValueError(f"{name} must be class indices in [0, {num_classes}), got {out[0]}")
    idx = labels * num_classes + preds
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def precision_recall_f1(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 (0 where undefined, as scikit-learn's zero_division=0)."""
    m = np.asarray(counts, dtype=np.float64)
    tp, predicted, support = np.diag(m), m.sum(axis=0), m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def macro_average(counts: np.ndarray) -> tuple[float, float, float]:
    """Unweighted mean precision, recall and F1 over ALL classes of the confusion counts.

    The one definition of "macro" in this project (val_macro_f1, test_macro_f1, the report's
    "macro avg" row): every one of the K classes counts, as in a per-class table, including a
    class absent from both truth and predictions, whose F1 is 0. This is
    ``sklearn.metrics.f1_score(y, p, labels=range(K), average="macro")`` with its default
    zero_division (0 for undefined scores), not its default without ``labels`` (classes seen in
    truth or predictions) nor the mean over classes present in the truth.
    """
    precision, recall, f1 = precision_recall_f1(counts)
    if not len(f1):
        raise ValueError("macro average of 0 classes")
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> float:
    """Macro-F1 over all ``num_classes`` classes (see ``macro_average``): for truth [0, 0, 1, 1]
    and predictions [0, 0, 1, 2] with 3 classes it is (1 + 2/3 + 0) / 3 = 0.556."""
    return macro_average(confusion_counts(labels, preds, num_classes))[2]


def accuracy_ci(correct: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Accuracy and its exact (Clopper–Pearson) interval over per-image correctness (0/1 values):
    `binomial_ci` of the count correct."""
    x = np.asarray(correct, dtype=bool)
    if x.size == 0:
        raise ValueError("accuracy_ci needs at least one prediction")
    low, high = binomial_ci(int(x.sum()), int(x.size), level)
    return float(x.mean()), low, high


def binomial_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Clopper–Pearson ("exact") interval of a proportion of k successes in n trials, the one
    interval of every accuracy this project states (test_acc, cross-style scores, the probe).

    Why not the percentile bootstrap: on a small test split it is too narrow (1 correct of 14
    gives 0.000–0.214; the exact interval is 0.002–0.339), and it collapses to a point at 0 or n
    correct. Clopper–Pearson never covers less than `level`, at any n and p."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a value in (0, 1)")
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"binomial_ci needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    # The beta quantiles that scipy.stats.binomtest's "exact" interval takes, from scipy.special:
    # every study's driver computes intervals, and scipy.stats costs 4x as much to import (0.6 s).
    from scipy.special import betaincinv

    alpha = 1 - level
    low = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha / 2))
    high = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
    return low, high


# the study metric -> the trials.parquet column that ranks trials by it
RANK_COLUMNS = {("val_acc", "max"): "val_acc_max", ("val_loss", "min"): "val_loss_last"}


def rank_column(settings: dict[str, Any]) -> tuple[str, bool]:
    """The trials column that ranks trials, and whether larger is better.

    trials.parquet only summarises val_acc and val_loss; another study metric is ranked by
    val_acc_max (``rank_note`` says so on the page).
    """
    key = (settings.get("metric", "val_acc"), settings.get("mode", "max"))
    return RANK_COLUMNS.get(key, "val_acc_max"), key[1] == "max" or key not in RANK_COLUMNS


def ranked(trials: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """Trials with a usable metric (not errored/diverged), best first."""
    column, larger = rank_column(settings)
    ok = trials[~trials["status"].isin(("errored", "diverged")) & trials[column].notna()]
    return ok.sort_values(column, ascending=not larger, kind="stable")


ALPHA = 0.05


@dataclass(frozen=True)
class Baseline:
    """What guessing scores on one validation split."""

    num_classes: int
    n_val: int
    majority: float = 0.0  # the largest class's share of the validation split

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.n_val < 1:
            raise ValueError(
                f"Baseline needs num_classes >= 1 and n_val >= 1, got {self.num_classes}, "
                f"{self.n_val}"
            )

    @property
    def p0(self) -> float:
        return max(1.0 / self.num_classes, self.majority)

    @classmethod
    def from_manifest(cls, manifest: Mapping) -> Baseline:
        """From a prepared data set's manifest.json (its val counts per class)."""
        per_class = {c: v.get("val", 0) for c, v in manifest.get("class_counts", {}).items()}
        n_val = int(manifest["counts"]["val"])
        majority = max(per_class.values(), default=0) / n_val if n_val else 0.0
        return cls(len(manifest["classes"]), n_val, majority)


def binomial_upper(n: int, p: float, alpha: float) -> int:
    """The smallest count c with P(X >= c) <= alpha for X ~ Binomial(n, p)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha}: expected a value in (0, 1)")
    if p <= 0:
        return 1
    if p >= 1:
        return n + 1
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(n + 1)
    ]  # fmt: skip
    tail = 0.0
    for c in range(n, -1, -1):  # accumulate P(X >= c) from the top
        tail += math.exp(logs[c])
        if tail > alpha:
            return c + 1
    return 0


def chance_bound(base: Baseline, epochs: int = 1, alpha: float = ALPHA) -> float:
    """The accuracy a guesser's best of `epochs` validations stays at or below (1 - alpha)."""
    c = binomial_upper(base.n_val, base.p0, alpha / max(1, epochs))
    return (c - 1) / base.n_val


def best_at_chance(best: float, epochs: int, base: Baseline, alpha: float = ALPHA) -> bool:
    """True when a best validation accuracy over `epochs` epochs does not beat guessing; NaN (no
    epoch validated) counts as at chance: it showed nothing."""
    if not (best == best and math.isfinite(best)):
        return True
    return best <= chance_bound(base, epochs, alpha) + 1e-12


def at_chance(val_accs: Sequence[float], base: Baseline, alpha: float = ALPHA) -> bool:
    """True when no validation accuracy of the history beats guessing (see the module doc)."""
    finite = [v for v in val_accs if v == v and math.isfinite(v)]
    return best_at_chance(max(finite, default=math.nan), len(val_accs), base, alpha)


def at_chance_trials(trials, base: Baseline, alpha: float = ALPHA):
    """A boolean Series over trials.parquet rows (its val_acc_max and epochs columns)."""
    flags = [
        best_at_chance(float(b), int(e), base, alpha)
        for b, e in zip(trials["val_acc_max"], trials["epochs"], strict=True)
    ]
    return pd.Series(flags, index=trials.index, dtype=bool)


def verdict(val_accs: Sequence[float], base: Baseline, alpha: float = ALPHA) -> str:
    """One line for the console and the report; empty when the trial beat chance."""
    finite = [v for v in val_accs if v == v and math.isfinite(v)]
    return best_verdict(max(finite, default=math.nan), len(val_accs), base, alpha)


def best_verdict(best: float, epochs: int, base: Baseline, alpha: float = ALPHA) -> str:
    """`verdict` from a trial's best validation accuracy and its number of epochs."""
    if not best_at_chance(best, epochs, base, alpha):
        return ""
    shown = f"best val acc {best:.3f}" if best == best else "no validation"
    return (
        f"at chance after {epochs} epoch(s): {shown} <= {chance_bound(base, epochs, alpha):.3f}, "
        f"the {1 - alpha:.0%} bound of guessing ({base.p0:.3f} on {base.n_val} val images)"
    )
