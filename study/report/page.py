"""Assemble the report page: sections of escaped HTML, Plotly figures and one template.

Every string that comes from the study (names, class labels, paths, config values) is escaped
here, in ``sections.py``/``markup.py`` or by ``DataFrame.to_html(escape=True)``; figures escape
their own labels.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pandas as pd
import plotly.offline

from study.report import (
    architectures,
    compute,
    confirmed,
    costs,
    curves,
    evaluated,
    figures_eval,
    gradcam,
    history,
    hyperparameters,
    sections,
)
from study.report.categories import label
from study.report.evaluated import test_accuracy
from study.report.load import ReportInputError, StudyData, check_out_dir, load_study
from study.report.markup import Section, ci_text, dl, esc, fig_html, note, table
from study.report.trials import best_trial, hp_values
from study.results.statistics import rank_column
from study.spaces.settings import stopped_early

log = logging.getLogger(__name__)


def _summary(d: StudyData) -> str:
    meta, ds = d.meta, d.meta.get("dataset") or {}
    smoke = compute.smoke_note(meta)
    items = [("description", esc(str(meta.get("description", ""))))]
    if smoke:
        items.append(("smoke test", f'<span class="smoke">{esc(smoke)}</span>'))
    items += [
        ("data set", esc(f"{ds.get('name', '?')} {ds.get('version', '')}".strip())),
        ("split rule", esc(str(ds.get("split_rule", "?")))),
        ("classes", esc(", ".join(d.classes)) or "?"),
        ("images", esc(", ".join(f"{k} {v}" for k, v in (ds.get("counts") or {}).items()))),
        ("space", esc(str(meta.get("space", "?")))),
        ("started", esc(str(meta.get("started", "?")))),
        ("finished", esc(str(meta.get("finished") or "still running (or interrupted)"))),
    ]
    split = {"searched": {}, "fixed": {}, "internal": {}}
    if d.trials is not None:
        c = compute.status_counts(d.trials)
        items.append(
            (
                "trials",
                esc(
                    f"{c['total']} in all: {c['finished']} finished, "
                    f"{c['stopped']} {stopped_early(d.settings.get('scheduler'))}, "
                    f"{c['errored']} errored, "
                    f"{c['diverged']} diverged, {c['running']} running"
                ),
            )
        )
        used = compute.compute_used(d.trials, d.epochs)
        devices = ", ".join(f"{k} ×{v}" for k, v in used["devices"].items())
        items.append(
            (
                "compute used",
                esc(
                    f"{used['trial_hours']:.2f} trial-hours, {used['epochs']} epochs"
                    + (f" on {devices}" if devices else "")
                ),
            )
        )
        split = compute.config_split(d.trials, d.hyperparameters)
        best = best_trial(d.trials, d.settings)
        if best is not None:
            searched = hp_values(best.to_frame().T, d.hyperparameters).iloc[0]
            items.append(
                (
                    "best trial",
                    esc(
                        f"{best['trial_id']} ({best['model']}, {best['status']}, "
                        f"max val acc {best['val_acc_max']:.3f})"
                    ),
                )
            )
            items.append(
                (
                    "its searched values",
                    esc(
                        ", ".join(f"{k}={label(v)}" for k, v in searched.items() if label(v) != "")
                    ),
                )
            )
            items.append(
                (
                    "its test accuracy",
                    ci_text(test_accuracy(best, d.predictions, d.classes)),
                )
            )
        else:
            items.append(("best trial", "none has reported a validation accuracy yet"))
    elif d.hyperparameters:
        split["searched"] = compute.config_split(pd.DataFrame(), d.hyperparameters)["searched"]

    def pairs(values: dict[str, str]) -> str:
        return esc(", ".join(f"{k}={v}" for k, v in values.items())) or "none"

    items += [
        (
            "searched",
            esc("; ".join(f"{k}: {v}" for k, v in split["searched"].items()))
            or "nothing declared in study.json",
        ),
        ("fixed settings", pairs(split["fixed"])),
    ]
    extra = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(str(meta[k]))}</dd>"
        for k in ("seed", "git_commit", "command")
        if meta.get(k) is not None
    )
    versions = esc(", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()))
    return (
        dl(items) + f'<details><summary>run details</summary><dl class="summary">{extra}'
        f"<dt>internal keys</dt><dd>{pairs(split['internal'])}</dd>"
        f"<dt>versions</dt><dd>{versions}</dd></dl></details>"
    )


def study_sections(d: StudyData) -> list[Section]:
    """All sections of one study's report, each rendering what the data allows."""
    metric = rank_column(d.settings)[0].replace("_", " ")
    out: list[Section] = [("summary", "Summary", _summary(d))]
    has_trials = d.trials is not None and not d.trials.empty
    gflops, gflops_notes = pd.Series(dtype=float), []
    if has_trials:
        gflops, gflops_notes = architectures.trial_gflops(
            d.trials, len(d.classes), d.settings.get("image_size")
        )
        out.append(
            (
                "architectures",
                "Architectures",
                architectures.architectures_section(d, gflops, gflops_notes),
            )
        )
        board = compute.leaderboard(
            d.trials,
            d.hyperparameters,
            d.settings,
            gflops,
            d.meta.get("seed"),
            compute.baseline(d.meta),
        )
        out.append(
            (
                "leaderboard",
                "Leaderboard",
                "<p>Click a column header to sort. Blank hyperparameter cells: not set in "
                "that trial (a conditional hyperparameter).</p>" + table(board),
            )
        )
        out.append(("history", "History", history.history_section(d, metric)))
    out += confirmed.confirmed_sections(d)  # confirm.parquet of study.evaluation.confirm, if any
    out.append(("curves", "Learning curves", curves.curves_section(d)))
    if has_trials:
        out.append(
            (
                "hyperparameters",
                "Hyperparameters",
                hyperparameters.hyperparameters_section(d, metric),
            )
        )
        out.append(("cost", "Accuracy against cost", costs.costs_section(d, metric, gflops)))
    best_html, trial = evaluated.evaluated_section(d)
    out.append(("best", "Evaluated models on the test split", best_html))
    out.append(("gradcam", "Grad-CAM", gradcam.gradcam_section(d, trial)))
    notes = d.notes + [n for n in [compute.rank_note(d.settings)] if n]
    if notes:
        items = "".join(f"<li>{esc(n)}</li>" for n in notes)
        out.insert(0, ("notes", "What is missing", f"<ul>{items}</ul>"))
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


def write_page(
    out_dir: Path,
    title: str,
    subtitle: str,
    sections_: list[Section],
    *,
    self_contained: bool = False,
    banner: str = "",
    refresh_s: int | None = None,
) -> Path:
    """Write index.html, with Plotly inline (``self_contained``: one file to copy anywhere) or
    in assets/plotly.min.js beside it; either way the report needs no network."""
    check_out_dir(out_dir, "report folder")  # never over a page or folder of someone else's
    js = plotly.offline.get_plotlyjs()
    if self_contained:
        plotly_tag = f"<script>{js}</script>"
    else:
        assets = out_dir / "assets"
        assets.mkdir(parents=True, exist_ok=True)
        target = assets / "plotly.min.js"
        if not target.exists() or target.stat().st_size != len(js.encode()):
            target.write_text(js, encoding="utf-8")
        plotly_tag = '<script src="assets/plotly.min.js"></script>'
    out_dir.mkdir(parents=True, exist_ok=True)
    template = resources.files("study.report").joinpath("template.html").read_text()
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections_)
    body = "\n".join(
        f'<section id="{a}" class="{a}"><h2>{esc(t)}</h2>{h}</section>' for a, t, h in sections_
    )
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    values = {
        "title": esc(title),
        "subtitle": esc(subtitle),
        "nav": nav,
        "banner": banner,
        "refresh": refresh,
        "body": body,
        "plotly": plotly_tag,
    }
    # one pass, so nothing substituted is read again (plotly.js is full of "$" and braces)
    page = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)
    index = out_dir / "index.html"
    tmp = index.with_name(".index.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(index)  # a reader (a live page reloading) never sees half a page
    return index


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def build_report(
    study_dir: str,
    out_dir: str | None = None,
    *,
    self_contained: bool = False,
    refresh_s: int | None = None,
    log_notes: bool = True,
) -> Path:
    """Write the report of one study; returns the path of its index.html. ``refresh_s``: a
    page of a running study reloads itself this often; ``log_notes=False``: what is missing is
    on the page only (the live report, rewritten every minute, would repeat it in the log)."""
    data = load_study(str(study_dir))
    for n in data.notes if log_notes else ():  # also on the page; logged for the CLI and runner
        log.warning("%s: %s", data.name, n)
    sections_ = study_sections(data)
    out = Path(out_dir) if out_dir is not None else Path("reports") / _slug(data.name)
    smoke = " · SMOKE TEST" if compute.is_smoke(data.meta) else ""
    subtitle = f"Study report{smoke} · {data.uri} · generated {_stamp()}"
    banner = sections.banner(data)
    return write_page(
        out,
        f"Study {data.name}",
        subtitle,
        sections_,
        self_contained=self_contained,
        banner=banner,
        refresh_s=refresh_s if banner else None,
    )


def build_compare_report(
    study_dirs: list[str], out_dir: str | None = None, *, self_contained: bool = True
) -> Path:
    """Write the cross-study comparison (the seed's results table); returns index.html's path.
    Self-contained by default: a comparison is often mailed or copied on its own."""
    if len(study_dirs) < 1:
        raise ReportInputError("--compare needs at least one study directory")
    studies = [load_study(str(s)) for s in study_dirs]
    rows = compute.compare_rows(studies)
    notes = [f"{s.name}: {n}" for s in studies for n in s.notes]
    for n in notes:
        log.warning("%s", n)
    out_sections: list[Section] = []
    if notes:
        out_sections.append(
            (
                "notes",
                "What is missing",
                "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>",
            )
        )
    if rows.empty:
        out_sections.append(("results", "Results", note("None of the studies has a ranked trial.")))
    else:
        shown = rows.assign(
            **{
                "test acc 95% CI": [
                    f"{lo:.3f}–{hi:.3f}" if pd.notna(lo) else ""
                    for lo, hi in zip(rows["ci low"], rows["ci high"], strict=True)
                ]
            }
        ).drop(columns=["ci low", "ci high"])
        out_sections.append(
            ("results", "Results (best trial per study × model × data set)", table(shown))
        )
        out_sections.append(("charts", "Grouped bars", fig_html(figures_eval.compare_figure(rows))))
    out = Path(out_dir) if out_dir is not None else Path("reports") / "compare"
    names = ", ".join(
        s.name + (" (smoke test)" if compute.is_smoke(s.meta) else "") for s in studies
    )
    return write_page(
        out,
        "Study comparison",
        f"{names} · generated {_stamp()}",
        out_sections,
        self_contained=self_contained,
    )
