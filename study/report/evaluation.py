"""Plain data about the best model on the test split: accuracy with a bootstrap CI, confusion
matrix, per-class scores, misclassified images and Grad-CAM rows (pandas/numpy, no Plotly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from study.results.statistics import bootstrap_ci, macro_average, precision_recall_f1


def label_names(values: pd.Series, classes: list[str]) -> pd.Series:
    """Labels as class names, whether stored as names or as class indices."""
    if pd.api.types.is_integer_dtype(values) and classes:
        return values.map(lambda i: classes[i] if 0 <= i < len(classes) else str(i))
    return values.astype(str)


def test_accuracy(
    trial: pd.Series, predictions: pd.DataFrame | None, classes: list[str]
) -> dict[str, Any] | None:
    """Test accuracy with 95 % CI: bootstrapped from predictions, else the stored columns."""
    if predictions is not None:
        p = predictions[predictions["trial_id"] == trial["trial_id"]]
        if len(p):
            correct = label_names(p["label"], classes) == label_names(p["pred"], classes)
            acc, low, high = bootstrap_ci(correct.to_numpy())
            return {"acc": acc, "low": low, "high": high, "n": len(p), "source": "bootstrap"}
    if pd.notna(trial.get("test_acc")):
        return {
            "acc": float(trial["test_acc"]),
            "low": float(trial["test_acc_ci_low"]),
            "high": float(trial["test_acc_ci_high"]),
            "n": None,
            "source": "trials.parquet",
        }
    return None


def confusion(
    labels: pd.Series, preds: pd.Series, classes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts (rows: true, columns: predicted) and their row-normalised form (NaN if no support)."""
    names = list(classes) or sorted(set(labels) | set(preds))
    extra = sorted((set(labels) | set(preds)) - set(names))  # labels not in study.json
    names += extra
    counts = pd.crosstab(
        pd.Categorical(labels, categories=names),
        pd.Categorical(preds, categories=names),
        dropna=False,
    ).reindex(index=names, columns=names, fill_value=0)
    counts.index.name, counts.columns.name = "true", "predicted"
    support = counts.sum(axis=1).replace(0, np.nan)
    return counts, counts.div(support, axis=0)


def per_class_scores(counts: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1 and support per class from confusion counts (0 where undefined)."""
    precision, recall, f1 = precision_recall_f1(counts.to_numpy())
    support = counts.to_numpy().sum(axis=1)
    scores = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)},
        index=pd.Index(counts.index.astype(str), name="class"),
    )
    # metrics.macro_average: every class of the table counts, as for val_/test_macro_f1
    precision, recall, f1 = macro_average(counts.to_numpy()) if len(counts) else (np.nan,) * 3
    macro = {"precision": precision, "recall": recall, "f1": f1, "support": int(support.sum())}
    return pd.concat([scores, pd.DataFrame(macro, index=["macro avg"])])


def misclassified(predictions: pd.DataFrame, classes: list[str], limit: int = 24) -> pd.DataFrame:
    """The most confident mistakes of one trial's predictions, with names for labels."""
    p = predictions.assign(
        label=label_names(predictions["label"], classes),
        pred=label_names(predictions["pred"], classes),
    )
    wrong = p[p["label"] != p["pred"]]
    return wrong.sort_values("confidence", ascending=False, kind="stable").head(limit)


def gradcam_items(gradcam: pd.DataFrame, classes: list[str], per_class: int = 4) -> pd.DataFrame:
    """Up to ``per_class`` Grad-CAM rows per true class, in class order."""
    g = gradcam.assign(
        label=label_names(gradcam["label"], classes), pred=label_names(gradcam["pred"], classes)
    )
    order = {c: i for i, c in enumerate(classes)}
    g = g.assign(_order=g["label"].map(order).fillna(len(order)))
    g = g.sort_values(["_order", "label"], kind="stable")
    return g.groupby("label", sort=False).head(per_class).drop(columns="_order")
