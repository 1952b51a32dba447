"""How every figure of the report looks: one Plotly template, one style per trial status, one
colour per model family, and ``txt`` for any study string shown in a figure.

Plotly renders ``<b>``-style pseudo-HTML in labels and decodes ``&lt;``/``&gt;``/``&amp;``, so every
user-provided string (class names, trial ids, config values) goes through ``txt`` and shows as
literal text.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.colors as pc

from study.spaces.settings import stopped_early

TEMPLATE = "plotly_white"
# How each trial status is drawn in curves and scatter plots: (colour, dash, legend name).
STYLE = {
    "finished": ("#1f77b4", "solid", "finished"),
    "stopped": ("#9a9a9a", "dash", stopped_early()),  # the page's text names the scheduler
    "running": ("#ff7f0e", "solid", "running"),
    "errored": ("#d62728", "dot", "errored"),
    "diverged": ("#8c564b", "dot", "diverged"),
    "unknown": ("#7f7f7f", "dot", "unknown status"),
}


def txt(value: Any) -> str:
    """Text safe for Plotly labels: Plotly decodes these entities back, so it shows literally."""
    return html.escape(str(value), quote=False)


def status_style(status: str) -> tuple[str, str, str]:
    return STYLE.get(status, STYLE["unknown"])


def vline(panel: int, x: float, color: str, dash: str = "dot") -> dict[str, Any]:
    """A vertical line across subplot number ``panel`` (1-based) as a layout shape. Collected and
    set once: Plotly's add_vline re-validates every shape on each call (seconds per figure)."""
    n = "" if panel == 1 else str(panel)
    return {
        "type": "line",
        "xref": f"x{n}",
        "yref": f"y{n} domain",
        "x0": x,
        "x1": x,
        "y0": 0,
        "y1": 1,
        "line": {"color": color, "dash": dash, "width": 1},
    }


def family_colors(families: list[str]) -> dict[str, str]:
    """One colour per model family, the same in every figure of the page."""
    palette = pc.qualitative.D3
    return {f: palette[i % len(palette)] for i, f in enumerate(sorted(set(families)))}
