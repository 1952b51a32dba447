"""Assemble the report page: sections of escaped HTML, Plotly figures and one template.

Every string that comes from the study (names, class labels, paths, config values) is escaped
here or by ``DataFrame.to_html(escape=True)``; figures escape their own labels.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from study.report import compute, confirm_section, evaluation, figures
from study.report.load import ReportInputError, StudyData, load_study

esc = html.escape
log = logging.getLogger(__name__)
Section = tuple[str, str, str]  # (anchor id, title, inner HTML)


def _fig(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False,
                       config={"responsive": True, "displaylogo": False})


def _table(df: pd.DataFrame, index: bool = False, scroll: bool = False) -> str:
    body = df.to_html(escape=True, index=index, na_rep="", border=0, classes="sortable",
                      float_format=lambda v: f"{v:.4g}")
    return f'<div class="scroll">{body}</div>' if scroll else body


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _img(png: Any, alt: str = "") -> str:
    if png is None or (isinstance(png, float) and pd.isna(png)) or len(png) == 0:
        return '<span class="missing-thumb" title="no thumbnail"></span>'
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{esc(alt)}">'


def _dl(items: list[tuple[str, str]]) -> str:
    """A definition list; values are already-escaped HTML."""
    return '<dl class="summary">' + "".join(
        f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _ci(test: dict[str, Any] | None) -> str:
    if test is None:
        return "not evaluated on the test split (yet)"
    n = f", {test['n']} test images" if test["n"] else ""
    return (f"{test['acc']:.4f} (95 % CI {test['low']:.4f}–{test['high']:.4f}, "
            f"{esc(test['source'])}{n})")


def _summary(d: StudyData) -> str:
    meta, ds = d.meta, d.meta.get("dataset") or {}
    items = [("description", esc(str(meta.get("description", "")))),
             ("data set", esc(f"{ds.get('name', '?')} {ds.get('version', '')}".strip())),
             ("split rule", esc(str(ds.get("split_rule", "?")))),
             ("classes", esc(", ".join(d.classes)) or "?"),
             ("images", esc(", ".join(f"{k} {v}" for k, v in (ds.get("counts") or {}).items()))),
             ("space", esc(str(meta.get("space", "?")))),
             ("started", esc(str(meta.get("started", "?")))),
             ("finished", esc(str(meta.get("finished") or "still running (or interrupted)")))]
    if d.trials is not None:
        c = compute.status_counts(d.trials)
        items.append(("trials", esc(
            f"{c['total']} in all: {c['finished']} finished, {c['stopped']} stopped by ASHA, "
            f"{c['errored']} errored, {c['diverged']} diverged, {c['running']} running")))
        used = compute.compute_used(d.trials, d.epochs)
        devices = ", ".join(f"{k} ×{v}" for k, v in used["devices"].items())
        items.append(("compute used", esc(
            f"{used['trial_hours']:.2f} trial-hours, {used['epochs']} epochs"
            + (f" on {devices}" if devices else ""))))
        best = compute.best_trial(d.trials, d.settings)
        if best is not None:
            config = {k.removeprefix("config/"): compute.format_value(v)
                      for k, v in best.items()
                      if str(k).startswith("config/") and k != "config/suggested"
                      and compute.format_value(v) != ""}  # "" = not set in this trial
            items.append(("best trial", esc(
                f"{best['trial_id']} ({best['model']}, {best['status']}, "
                f"max val acc {best['val_acc_max']:.4f})")))
            items.append(("best configuration", esc(
                ", ".join(f"{k}={v}" for k, v in config.items()))))
            items.append(("its test accuracy", _ci(
                evaluation.test_accuracy(best, d.predictions, d.classes))))
        else:
            items.append(("best trial", "none has reported a validation accuracy yet"))
    extra = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(meta[k]))}</dd>"
                    for k in ("seed", "git_commit", "command") if meta.get(k) is not None)
    versions = esc(", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()))
    return (_dl(items) + f'<details><summary>run details</summary><dl class="summary">{extra}'
            f"<dt>versions</dt><dd>{versions}</dd></dl></details>")


def _curves(d: StudyData) -> str:
    if d.epochs is None or d.epochs.empty:
        return _note("No epochs recorded yet.")
    s = d.settings
    rungs = []
    if s.get("scheduler", "asha") == "asha" and {
            "grace_period", "reduction_factor", "max_epochs"} <= s.keys():
        rungs = compute.rung_epochs(int(s["grace_period"]), int(s["reduction_factor"]),
                                    int(s["max_epochs"]))
    best = compute.best_trial(d.trials, s) if d.trials is not None else None
    fig = figures.learning_curves_figure(
        compute.learning_curves(d.epochs, d.trials), rungs,
        None if best is None else str(best["trial_id"]))
    rung_text = "; dotted purple lines: ASHA rungs" if rungs else ""
    return (f"<p>Dashed grey: stopped early by ASHA (× marks the stop){rung_text}; thick green: "
            "best trial.</p>" + _fig(fig))


def _hyperparameters(d: StudyData, metric: str) -> str:
    axes = compute.axis_data(d.trials, d.hyperparameters, d.settings)
    if not axes:
        return _note("No searched hyperparameters found in study.json and trials.parquet.")
    if not axes[0]["y"]:
        return _note("No trial has reported a validation accuracy yet.")
    full = [a for a in axes if a["complete"]]
    parts = ["<h3>Parallel coordinates</h3>"]
    parts.append(_fig(figures.parallel_figure(full, metric)) if full else "")
    if len(full) < len(axes):
        parts.append(_note("Left out of the parallel coordinates (conditional, not set in every "
                           "trial): " + ", ".join(a["name"] for a in axes if not a["complete"])))
    imp, why = compute.param_importances(d.trials, d.hyperparameters, d.settings)
    parts.append("<h3>Importance</h3>")
    parts.append(_fig(figures.importance_figure(imp)) + f"<p>{esc(why)}</p>" if imp
                 else _note(why))
    edge = [a["name"] for a in axes if a["at_edge"]]
    parts.append("<h3>Each hyperparameter</h3>")
    if edge:
        parts.append(_note("Best value at the edge of its search range (consider widening it): "
                           + ", ".join(edge)))
    parts.append(_fig(figures.axis_figure(axes, metric)))
    return "".join(parts)


def _cost(d: StudyData, metric: str) -> str:
    costs = compute.cost_data(d.trials, d.settings)
    if all(c.empty for c in costs.values()):
        return _note("No trial with both accuracy and cost recorded yet.")
    return "<p>Red: Pareto front (no other trial is both cheaper and more accurate).</p>" + _fig(
        figures.cost_figure(costs, metric))


def _pick_evaluated(d: StudyData, ids: list[str]) -> str:
    if d.trials is not None:
        best = compute.best_trial(d.trials, d.settings, among=set(ids))
        if best is not None:
            return str(best["trial_id"])
    return sorted(ids)[0]


def _best_model(d: StudyData) -> tuple[str, str | None]:
    p = d.predictions
    if p is None or p.empty:
        return _note("No test predictions yet: only the best trials are evaluated on the test "
                     "split, at the end of the study."), None
    trial = _pick_evaluated(d, p["trial_id"].astype(str).unique().tolist())
    p = p[p["trial_id"].astype(str) == trial]
    labels = evaluation.label_names(p["label"], d.classes)
    preds = evaluation.label_names(p["pred"], d.classes)
    counts, norm = evaluation.confusion(labels, preds, d.classes)
    scores = evaluation.per_class_scores(counts).round(4).rename_axis("class").reset_index()
    wrong = evaluation.misclassified(p, d.classes)
    n_wrong = int((labels != preds).sum())
    gallery = "".join(
        f"<figure>{_img(r.get('thumb'), 'misclassified test image')}<figcaption>"
        f"true <b>{esc(str(r['label']))}</b>, predicted <b>{esc(str(r['pred']))}</b> "
        f"({float(r['confidence']):.0%})<br><span class=\"path\">{esc(str(r['path']))}</span>"
        f"</figcaption></figure>" for _, r in wrong.iterrows())
    html_ = (f"<p>Trial <b>{esc(trial)}</b>, {len(p)} test images.</p>"
             "<h3>Normalised confusion matrix</h3>" + _fig(figures.confusion_figure(norm, counts))
             + "<h3>Per-class precision, recall and F1</h3>" + _table(scores)
             + f"<h3>Misclassified test images: {n_wrong} of {len(p)}"
             + (f", the {len(wrong)} most confident shown" if len(wrong) < n_wrong else "")
             + "</h3>"
             + (f'<div class="gallery">{gallery}</div>' if gallery else
                _note("No misclassified test images.")))
    return html_, trial


def _gradcam(d: StudyData, trial: str | None) -> str:
    g = d.gradcam
    if g is None or g.empty:
        return _note("No Grad-CAM maps stored for this study (the runner computes them for the "
                     "best model at the end of the study).")
    ids = g["trial_id"].astype(str)
    shown = trial if trial in set(ids) else _pick_evaluated(d, ids.unique().tolist())
    items = evaluation.gradcam_items(g[ids == shown], d.classes)
    parts = [f"<p>Trial <b>{esc(shown)}</b>. Left: test image; right: where the network looks "
             "(Grad-CAM, red = most evidence for the predicted class).</p>"]
    for label, rows in items.groupby("label", sort=False):
        cells = "".join(
            f"<figure>{_img(r['image'], 'test image')}"
            f"{_img(figures.gradcam_overlay(r['image'], r['cam'], int(r['cam_size'])), 'Grad-CAM')}"
            f"<figcaption>predicted <b>{esc(str(r['pred']))}</b> ({float(r['confidence']):.0%})"
            f"<br><span class=\"path\">{esc(str(r['path']))}</span></figcaption></figure>"
            for _, r in rows.iterrows())
        parts.append(f'<h3>true class: {esc(str(label))}</h3><div class="gallery">{cells}</div>')
    return "".join(parts)


def study_sections(d: StudyData) -> list[Section]:
    """All sections of one study's report, each rendering what the data allows."""
    metric = compute.rank_column(d.settings)[0].replace("_", " ")
    sections: list[Section] = [("summary", "Summary", _summary(d))]
    if d.trials is not None and not d.trials.empty:
        board = compute.leaderboard(d.trials, d.hyperparameters, d.settings)
        sections.append(("leaderboard", "Leaderboard",
                         "<p>Click a column header to sort.</p>" + _table(board, scroll=True)))
    sections += confirm_section.sections(d)  # confirm.parquet of study.confirm, if any
    sections.append(("curves", "Learning curves", _curves(d)))
    if d.trials is not None and not d.trials.empty:
        sections.append(("hyperparameters", "Hyperparameters", _hyperparameters(d, metric)))
        sections.append(("cost", "Accuracy against cost", _cost(d, metric)))
    best_html, trial = _best_model(d)
    sections.append(("best", "Best model on the test split", best_html))
    sections.append(("gradcam", "Grad-CAM", _gradcam(d, trial)))
    notes = d.notes + [n for n in [compute.rank_note(d.settings)] if n]
    if notes:
        items = "".join(f"<li>{esc(n)}</li>" for n in notes)
        sections.insert(0, ("notes", "What is missing", f"<ul>{items}</ul>"))
    return sections


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


def write_page(out_dir: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    """Write index.html and assets/plotly.min.js (the report needs no network)."""
    assets = out_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    js = plotly.offline.get_plotlyjs()
    target = assets / "plotly.min.js"
    if not target.exists() or target.stat().st_size != len(js.encode()):
        target.write_text(js, encoding="utf-8")
    template = Template(resources.files("study.report").joinpath("template.html").read_text())
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections)
    body = "\n".join(f'<section id="{a}" class="{a}"><h2>{esc(t)}</h2>{h}</section>'
                     for a, t, h in sections)
    index = out_dir / "index.html"
    index.write_text(template.substitute(
        title=esc(title), subtitle=esc(subtitle), nav=nav, body=body), encoding="utf-8")
    return index


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def build_report(study_dir: str, out_dir: str | None = None) -> Path:
    """Write the report of one study; returns the path of its index.html."""
    data = load_study(str(study_dir))
    for note in data.notes:  # also on the page; logged so the CLI and runner show them
        log.warning("%s: %s", data.name, note)
    sections = study_sections(data)
    out = Path(out_dir) if out_dir is not None else Path("reports") / _slug(data.name)
    subtitle = f"Study report · {data.uri} · generated {_stamp()}"
    return write_page(out, f"Study {data.name}", subtitle, sections)


def build_compare_report(study_dirs: list[str], out_dir: str | None = None) -> Path:
    """Write the cross-study comparison (the seed's results table); returns index.html's path."""
    if len(study_dirs) < 1:
        raise ReportInputError("--compare needs at least one study directory")
    studies = [load_study(str(s)) for s in study_dirs]
    rows = compute.compare_rows(studies)
    notes = [f"{s.name}: {n}" for s in studies for n in s.notes]
    for note in notes:
        log.warning("%s", note)
    sections: list[Section] = []
    if notes:
        sections.append(("notes", "What is missing",
                         "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"))
    if rows.empty:
        sections.append(("results", "Results", _note("None of the studies has a ranked trial.")))
    else:
        shown = rows.assign(**{"test acc 95% CI": [
            f"{lo:.4f}–{hi:.4f}" if pd.notna(lo) else ""
            for lo, hi in zip(rows["ci low"], rows["ci high"], strict=True)]}
        ).drop(columns=["ci low", "ci high"]).round(4)
        sections.append(("results", "Results (best trial per study × model × data set)",
                         _table(shown, scroll=True)))
        sections.append(("charts", "Grouped bars", _fig(figures.compare_figure(rows))))
    out = Path(out_dir) if out_dir is not None else Path("reports") / "compare"
    names = ", ".join(s.name for s in studies)
    return write_page(out, "Study comparison", f"{names} · generated {_stamp()}", sections)
