"""The report sections that answer "which architecture is best, and why" and "how did the study
go": Architectures, History, every evaluated trial on the test split, and Grad-CAM."""

from __future__ import annotations

from typing import Any

import pandas as pd

from study.report import evaluation, figures_eval
from study.report.load import StudyData
from study.report.markup import ci_text, esc, fig_html, img, note, table
from study.report.trials import best_trial
from study.results.statistics import ranked


def _pick_evaluated(d: StudyData, ids: list[str]) -> str:
    if d.trials is not None:
        best = best_trial(d.trials, d.settings, among=set(ids))
        if best is not None:
            return str(best["trial_id"])
    return sorted(ids)[0]


def _evaluated_order(d: StudyData, ids: list[str]) -> list[str]:
    """Evaluated trials, best by the study metric first (unranked ones last, by id)."""
    ranking = [] if d.trials is None else ranked(d.trials, d.settings)["trial_id"].astype(str)
    rank = {t: i for i, t in enumerate(ranking)}
    return sorted(ids, key=lambda i: (rank.get(i, len(rank)), i))


def _one_trial(d: StudyData, p: pd.DataFrame, trial: str) -> str:
    labels = evaluation.label_names(p["label"], d.classes)
    preds = evaluation.label_names(p["pred"], d.classes)
    counts, norm = evaluation.confusion(labels, preds, d.classes)
    scores = evaluation.per_class_scores(counts).rename_axis("class").reset_index()
    wrong = evaluation.misclassified(p, d.classes)
    n_wrong = int((labels != preds).sum())
    row = None
    if d.trials is not None:
        match = d.trials[d.trials["trial_id"].astype(str) == trial]
        row = match.iloc[0] if len(match) else None
    test = evaluation.test_accuracy(row, d.predictions, d.classes) if row is not None else None
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
        + fig_html(figures_eval.confusion_figure(norm, counts))
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


def gradcam_section(d: StudyData, trial: str | None) -> str:
    g = d.gradcam
    if g is None or g.empty:
        return note(
            "No Grad-CAM maps stored for this study (the runner computes them for the "
            "best model at the end of the study)."
        )
    ids = g["trial_id"].astype(str)
    shown = trial if trial in set(ids) else _pick_evaluated(d, ids.unique().tolist())
    items = evaluation.gradcam_items(g[ids == shown], d.classes)
    parts = [
        f"<p>Trial <b>{esc(shown)}</b>. Left: test image; right: where the network looks "
        "(Grad-CAM, red = most evidence for the predicted class).</p>"
    ]
    for label, rows in items.groupby("label", sort=False):
        overlay = figures_eval.gradcam_overlay
        cells = "".join(
            f"<figure>{img(r['image'], 'test image')}"
            f"{img(overlay(r['image'], r['cam'], int(r['cam_size'])), 'Grad-CAM')}"
            f"<figcaption>predicted <b>{esc(str(r['pred']))}</b> ({float(r['confidence']):.0%})"
            f'<br><span class="path">{esc(str(r["path"]))}</span></figcaption></figure>'
            for _, r in rows.iterrows()
        )
        parts.append(f'<h3>true class: {esc(str(label))}</h3><div class="gallery">{cells}</div>')
    return "".join(parts)


def banner(d: StudyData) -> str:
    """'running: k of N trials done' while the study has not finished, else nothing."""
    if not d.meta or d.meta.get("finished"):
        return ""
    t = d.trials
    done = 0 if t is None else int((t["status"].astype(str) != "running").sum())
    total: Any = d.settings.get("num_samples") or "?"
    if d.meta.get("tuning_finished") or (isinstance(total, int) and done >= total):
        text = (
            f"running: {done} of {total} trials done; tuning finished, the best are being "
            "evaluated on the test split"
        )
    else:
        text = f"running: {done} of {total} trials done"
    return (
        f'<div class="banner running" id="running">{esc(text)} (this page is rewritten as '
        "trials finish; if it stops changing, the study was interrupted)</div>"
    )
