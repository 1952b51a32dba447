"""Small HTML pieces shared by the report's sections. Every string from the study goes through
``esc`` or ``DataFrame.to_html(escape=True)``; figures escape their own labels."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go

esc = html.escape
Section = tuple[str, str, str]  # (anchor id, title, inner HTML)

# How numbers are written in tables: accuracies and scores with 3 decimals everywhere.
THREE_DECIMALS = (
    "avg val acc",
    "max val acc",
    "test acc",
    "best max val acc",
    "median max val acc",
    "precision",
    "recall",
    "f1",
)


def _number_format(column: str) -> Callable[[Any], str] | None:
    def fmt(spec: str) -> Callable[[Any], str]:
        return lambda v: "" if pd.isna(v) else format(v, spec)

    if column in THREE_DECIMALS:
        return fmt(".3f")
    return {"params": fmt(",.0f"), "GFLOPs": fmt(".3g"), "epoch time (s)": fmt(".1f")}.get(column)


def fig_html(fig: go.Figure) -> str:
    return fig.to_html(
        full_html=False, include_plotlyjs=False, config={"responsive": True, "displaylogo": False}
    )


def table(df: pd.DataFrame, index: bool = False, classes: str = "sortable") -> str:
    """A sortable table, all rows shown (no scroll box hiding rows), numbers formatted."""
    formatters = {c: f for c in df.columns if (f := _number_format(str(c))) is not None}
    # params with thousands separators would sort as text; the sorter strips the commas
    return df.to_html(
        escape=True,
        index=index,
        na_rep="",
        border=0,
        classes=classes,
        formatters=formatters,
        float_format=lambda v: f"{v:.4g}",
    )


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def img(png: Any, alt: str = "") -> str:
    if png is None or (isinstance(png, float) and pd.isna(png)) or len(png) == 0:
        return '<span class="missing-thumb" title="no thumbnail"></span>'
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{esc(alt)}">'


def dl(items: list[tuple[str, str]]) -> str:
    """A definition list; values are already-escaped HTML."""
    return (
        '<dl class="summary">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items)
        + "</dl>"
    )


def ci_text(test: dict[str, Any] | None) -> str:
    if test is None:
        return "not evaluated on the test split (yet)"
    n = f", {test['n']} test images" if test["n"] else ""
    return (
        f"{test['acc']:.3f} (95 % CI {test['low']:.3f}–{test['high']:.3f}, "
        f"{esc(test['source'])}{n})"
    )
