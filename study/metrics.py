"""Metrics and the trial ranking shared by the trainable, the runner, test evaluation and the report
(numpy and pandas only: the report imports this without Ray)."""

from __future__ import annotations

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


def bootstrap_ci(
    correct: np.ndarray, n_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Accuracy and its percentile-bootstrap CI over per-image correctness (0/1 values)."""
    x = np.asarray(correct, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one prediction")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    # resample in chunks so a large test split does not need n_resamples * n indices at once
    chunk = max(1, 2_000_000 // x.size)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(x.mean()), float(low), float(high)


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
