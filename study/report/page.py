"""Assemble the report pages: each section's HTML from its own module, in page order, written
into one template with Plotly (inline or beside the page).

Every string that comes from the study (names, class labels, paths, config values) is escaped by
the section modules, ``markup.py`` or ``DataFrame.to_html(escape=True)``; figures escape their own
labels (``style.txt``).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pandas as pd
import plotly.offline

from study.report.architectures import architectures_section, trial_gflops
from study.report.compare import compare_rows, compare_sections
from study.report.confirmed import confirmed_sections
from study.report.costs import costs_section
from study.report.curves import curves_section
from study.report.evaluated import evaluated_section
from study.report.gradcam import gradcam_section
from study.report.history import history_section
from study.report.hyperparameters import hyperparameters_section
from study.report.leaderboard import leaderboard_section
from study.report.load import ReportInputError, StudyData, check_out_dir, load_study
from study.report.markup import Section, esc
from study.report.summary import is_smoke, rank_note, running_banner, summary_section
from study.results.statistics import rank_column

log = logging.getLogger(__name__)


def study_sections(d: StudyData) -> list[Section]:
    """All sections of one study's report, each rendering what the data allows."""
    metric = rank_column(d.settings)[0].replace("_", " ")
    out: list[Section] = [("summary", "Summary", summary_section(d))]
    has_trials = d.trials is not None and not d.trials.empty
    gflops, gflops_notes = pd.Series(dtype=float), []
    if has_trials:
        gflops, gflops_notes = trial_gflops(d.trials, len(d.classes), d.settings.get("image_size"))
        out.append(
            ("architectures", "Architectures", architectures_section(d, gflops, gflops_notes))
        )
        out.append(("leaderboard", "Leaderboard", leaderboard_section(d, gflops)))
        out.append(("history", "History", history_section(d, metric)))
    out += confirmed_sections(d)  # confirm.parquet of study.evaluation.confirm, if any
    out.append(("curves", "Learning curves", curves_section(d)))
    if has_trials:
        out.append(("hyperparameters", "Hyperparameters", hyperparameters_section(d, metric)))
        out.append(("cost", "Accuracy against cost", costs_section(d, metric, gflops)))
    best_html, trial = evaluated_section(d)
    out.append(("best", "Evaluated models on the test split", best_html))
    out.append(("gradcam", "Grad-CAM", gradcam_section(d, trial)))
    notes = d.notes + [n for n in [rank_note(d.settings)] if n]
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
    sections: list[Section],
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
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections)
    body = "\n".join(
        f'<section id="{a}" class="{a}"><h2>{esc(t)}</h2>{h}</section>' for a, t, h in sections
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
    sections = study_sections(data)
    out = Path(out_dir) if out_dir is not None else Path("reports") / _slug(data.name)
    smoke = " · SMOKE TEST" if is_smoke(data.meta) else ""
    subtitle = f"Study report{smoke} · {data.uri} · generated {_stamp()}"
    banner = running_banner(data)
    return write_page(
        out,
        f"Study {data.name}",
        subtitle,
        sections,
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
    rows = compare_rows(studies)
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
    out_sections += compare_sections(rows)
    out = Path(out_dir) if out_dir is not None else Path("reports") / "compare"
    names = ", ".join(s.name + (" (smoke test)" if is_smoke(s.meta) else "") for s in studies)
    return write_page(
        out,
        "Study comparison",
        f"{names} · generated {_stamp()}",
        out_sections,
        self_contained=self_contained,
    )
