"""The "Confirmed results" section: confirm.parquet (study.evaluation.confirm), when a study has
one.

Confirmed mean ± sd and 95 % t-interval across seeds or folds per top trial, ranked by the
confirmed validation mean, next to the tuning run's own (max-over-epochs) numbers; then the refit
and ensemble rows (the linear probe's rows are shown by the Leaderboard and Architectures
sections, as the bar).
"""

from __future__ import annotations

import html

import pandas as pd

from study.report.load import StudyData
from study.report.markup import Section
from study.results import confirmed

EXPLAIN = (
    "On a small validation split one accuracy is noise, and the best of many trials' maxima "
    "over epochs is biased upwards. Each top trial's config was retrained (new seeds, or "
    "cross-validation folds of train+val) to the epoch its trial chose; the ranking below is by "
    "the mean validation accuracy of those runs. The test split was only scored, never used "
    "to choose."
)


def _table(df: pd.DataFrame) -> str:
    body = df.to_html(
        escape=True,
        index=False,
        na_rep="",
        border=0,
        classes="sortable",
        float_format=lambda v: f"{v:.4g}",
    )
    return f'<div class="scroll">{body}</div>'


def confirmed_sections(d: StudyData) -> list[Section]:
    """[] when the study has no confirm.parquet, else the one section."""
    df = d.confirm
    if df is not None and "kind" in df:
        df = df[df["kind"] != confirmed.PROBE]  # the bar: the Leaderboard's and Architectures'
    if df is None or df.empty:
        return []
    parts = [f'<p class="note">{html.escape(EXPLAIN)}</p>']
    shown = confirmed.display(df)
    if not shown.empty:
        parts.append("<h3>Confirmed ranking (mean ± sd across repeats)</h3>" + _table(shown))
    finals = confirmed.finals(df)
    if not finals.empty:
        parts.append(
            "<h3>Single tuning models, refit and ensemble</h3>"
            "<p>tuning: a top trial's own best checkpoint; refit: the winner trained on "
            "train+val (the study's final model); ensemble: averaged probabilities; "
            "*_tta: with test-time augmentation.</p>" + _table(finals)
        )
    errors = df[df["error"].astype(str) != ""]
    if len(errors):
        items = "".join(
            f"<li>{html.escape(f'{r.kind} {r.trial_id} seed {r.seed}: {r.error}')}</li>"
            for r in errors.itertuples()
        )
        parts.append(f"<h3>Runs that failed</h3><ul>{items}</ul>")
    return [("confirmed", "Confirmed results (small-data checks)", "".join(parts))]
