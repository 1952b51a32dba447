"""The "Evaluated models on the test split" section: one tab per trial evaluated on the test
split, best by validation first, each with its test accuracy and exact 95 % CI, confusion
matrix, per-class scores and most confident mistakes. The plain data (pandas/numpy, no Plotly),
its figure, and the section's HTML.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from study.report.load import StudyData
from study.report.markup import ci_text, esc, fig_html, img, note, table
from study.report.style import TEMPLATE, txt
from study.results.statistics import accuracy_ci, macro_average, precision_recall_f1, ranked


def label_names(values: pd.Series, classes: list[str]) -> pd.Series:
    """Labels as class names, whether stored as names or as class indices."""
    if pd.api.types.is_integer_dtype(values) and classes:
        return values.map(lambda i: classes[i] if 0 <= i < len(classes) else str(i))
    return values.astype(str)


def test_accuracy(
    trial: pd.Series, predictions: pd.DataFrame | None, classes: list[str]
) -> dict[str, Any] | None:
    """Test accuracy with its exact (Clopper–Pearson) 95 % CI: from the predictions, else the
    stored columns."""
    if predictions is not None:
        p = predictions[predictions["trial_id"] == trial["trial_id"]]
        if len(p):
            correct = label_names(p["label"], classes) == label_names(p["pred"], classes)
            acc, low, high = accuracy_ci(correct.to_numpy())
            return {"acc": acc, "low": low, "high": high, "n": len(p), "source": "Clopper–Pearson"}
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


def confusion_figure(normalised: pd.DataFrame, counts: pd.DataFrame) -> go.Figure:
    """Row-normalised confusion matrix (rows: true class), counts in the hover."""
    names = [txt(c) for c in normalised.index]
    z = normalised.to_numpy(dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            text=np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.2f}")(np.nan_to_num(z))),
            texttemplate="%{text}",
            customdata=counts.to_numpy(),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.3f} (%{customdata} images)"
            "<extra></extra>",
            colorbar={"title": {"text": "share of true class"}},
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        height=220 + 45 * len(names),
        xaxis_title="predicted",
        yaxis_title="true",
        margin={"t": 30},
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def _evaluated_order(d: StudyData, ids: list[str]) -> list[str]:
    """Evaluated trials, best by the study metric first (unranked ones last, by id)."""
    ranking = [] if d.trials is None else ranked(d.trials, d.settings)["trial_id"].astype(str)
    rank = {t: i for i, t in enumerate(ranking)}
    return sorted(ids, key=lambda i: (rank.get(i, len(rank)), i))


def _one_trial(d: StudyData, p: pd.DataFrame, trial: str) -> str:
    labels = label_names(p["label"], d.classes)
    preds = label_names(p["pred"], d.classes)
    counts, norm = confusion(labels, preds, d.classes)
    scores = per_class_scores(counts).rename_axis("class").reset_index()
    wrong = misclassified(p, d.classes)
    n_wrong = int((labels != preds).sum())
    row = None
    if d.trials is not None:
        match = d.trials[d.trials["trial_id"].astype(str) == trial]
        row = match.iloc[0] if len(match) else None
    test = test_accuracy(row, d.predictions, d.classes) if row is not None else None
    gallery = "".join(
        f"<figure>{img(r.get('thumb'), 'misclassified test image')}<figcaption>"
        f"true <b>{esc(str(r['label']))}</b>, predicted <b>{esc(str(r['pred']))}</b> "
        f'({float(r["confidence"]):.0%})<br><span class="path">{esc(str(r["path"]))}</span>'
        f"</figcaption></figure>"
        for _, r in wrong.iterrows()
    )
    model = f" ({esc(str(row['model']))})" if row is not None else ""
    return (
        f"<p>Trial <b>{esc(trial)}</b>{model}, {len(p)} test images; test accuracy "
        f"{ci_text(test)}.</p>"
        "<h3>Normalised confusion matrix</h3>"
        + fig_html(confusion_figure(norm, counts))
        + "<h3>Per-class precision, recall and F1</h3>"
        + table(scores)
        + f"<h3>Misclassified test images: {n_wrong} of {len(p)}"
        + (f", the {len(wrong)} most confident shown" if len(wrong) < n_wrong else "")
        + "</h3>"
        + (
            f'<div class="gallery">{gallery}</div>'
            if gallery
            else note("No misclassified test images.")
        )
    )


def evaluated_section(d: StudyData) -> tuple[str, str | None]:
    """One tab per trial evaluated on the test split (best by validation first, shown);
    returns the HTML and the best evaluated trial."""
    p = d.predictions
    if p is None or p.empty:
        return note(
            "No test predictions yet: only the best trials are evaluated on the test "
            "split, at the end of the study."
        ), None
    ids = p["trial_id"].astype(str)
    order = _evaluated_order(d, ids.unique().tolist())
    tabs, panels = [], []
    for i, trial in enumerate(order):
        tag = "best by validation" if i == 0 else f"#{i + 1} by validation"
        tabs.append(
            f'<button type="button" class="tab" role="tab" data-tab="eval-{i}" '
            f'aria-selected="{str(i == 0).lower()}">{esc(trial)} ({tag})</button>'
        )
        hidden = "" if i == 0 else " hidden"
        panels.append(
            f'<div class="tabpanel" id="eval-{i}" role="tabpanel"{hidden}>'
            f"{_one_trial(d, p[ids == trial], trial)}</div>"
        )
    head = (
        f"<p>{len(order)} trial(s) evaluated on the test split; pick one:</p>"
        f'<div class="tabs" role="tablist">{"".join(tabs)}</div>'
        if len(order) > 1
        else ""
    )
    return head + "".join(panels), order[0]
