"""The report sections that answer "which architecture is best, and why" and "how did the study
go": Architectures, History, every evaluated trial on the test split, and Grad-CAM."""

from __future__ import annotations

from typing import Any

from study.report.load import StudyData
from study.report.markup import esc


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
