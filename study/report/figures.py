"""Plotly figures drawn from the plain data of ``compute.py``.

Plotly renders ``<b>``-style pseudo-HTML in labels and decodes ``&lt;``/``&gt;``/``&amp;``, so every
user-provided string (class names, trial ids, config values) goes through ``txt`` and shows as
literal text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.report.style import TEMPLATE, status_style, txt, vline


def _encode(axis: dict[str, Any]) -> dict[str, Any]:
    """A parcoords dimension: log floats on a log10 scale, integers with integer ticks,
    categories as codes in their computed order (numbers numerically, False before True)."""
    name = txt(axis["name"])
    if axis["numeric"]:
        values = np.asarray(axis["x"], dtype=float)
        if axis["log"]:
            return {"label": f"log10 {name}", "values": np.log10(values)}
        dim = {"label": name, "values": values}
        if axis.get("ticks"):
            dim |= {
                "tickvals": axis["ticks"],
                "ticktext": [str(t) for t in axis["ticks"]],
                "range": [axis["ticks"][0], axis["ticks"][-1]],
            }
        return dim
    codes = {c: i for i, c in enumerate(axis["categories"])}
    return {
        "label": name,
        "values": [codes[v] for v in axis["x"]],
        "tickvals": list(range(len(codes))),
        "ticktext": [txt(c) for c in codes],
        "range": [0, max(len(codes) - 1, 1)],
    }


def parallel_figure(axes: list[dict[str, Any]], metric: str) -> go.Figure:
    """Parallel coordinates of the searched hyperparameters against the study metric."""
    y = axes[0]["y"]  # every axis lists the same trials in the same order
    dims = [_encode(a) for a in axes] + [{"label": metric, "values": y}]
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": y,
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": metric}},
            },
            dimensions=dims,
        )
    )
    fig.update_layout(template=TEMPLATE, height=420, margin={"l": 60, "r": 60, "t": 60})
    return fig


def importance_figure(importances: dict[str, float], spread: pd.DataFrame | None) -> go.Figure:
    """Importance on all trials; whiskers: 10th-90th percentile over bootstrap resamples."""
    names = list(importances)[::-1]  # most important on top
    error: dict[str, Any] = {}
    if spread is not None and len(spread):
        lo = [float(spread[n].quantile(0.1)) if n in spread else importances[n] for n in names]
        hi = [float(spread[n].quantile(0.9)) if n in spread else importances[n] for n in names]
        error = {
            "error_x": {
                "type": "data",
                "symmetric": False,
                "array": [max(h - importances[n], 0) for h, n in zip(hi, names, strict=True)],
                "arrayminus": [max(importances[n] - v, 0) for v, n in zip(lo, names, strict=True)],
                "color": "#555",
            }
        }
    fig = go.Figure(
        go.Bar(
            x=[importances[n] for n in names],
            y=[txt(n) for n in names],
            orientation="h",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
            marker_color="#1f77b4",
            **error,
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        height=120 + 40 * len(names),
        xaxis_title="importance (PED-ANOVA, normalised; whiskers: 10th–90th "
        "percentile over bootstrap resamples of the trials)",
        margin={"t": 30},
    )
    return fig


def axis_figure(axes: list[dict[str, Any]], metric: str) -> go.Figure:
    """One panel per searched hyperparameter: metric vs value, best starred, edge flagged.
    Categories keep their computed order; integer axes have integer ticks."""
    ncols = min(3, len(axes))
    nrows = math.ceil(len(axes) / ncols)
    titles = [
        txt(a["name"]) + (f" ⚠ best at the {a['edge']} edge" if a["edge"] else "") for a in axes
    ]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles)
    shown: set[str] = set()
    shapes = []
    for i, a in enumerate(axes):
        row, col = i // ncols + 1, i % ncols + 1
        x = a["x"] if a["numeric"] else [None if v is None else txt(v) for v in a["x"]]
        frame = pd.DataFrame({"x": x, "y": a["y"], "status": a["status"], "t": a["trial_id"]})
        frame = frame[frame["x"].notna()]  # trials without this (conditional) hyperparameter
        for status, d in frame.groupby("status", sort=False):
            color, _, label = status_style(str(status))
            fig.add_trace(
                go.Scatter(
                    x=d["x"],
                    y=d["y"],
                    mode="markers",
                    name=label,
                    legendgroup=str(status),
                    showlegend=status not in shown,
                    marker={"color": color, "size": 8},
                    text=[txt(t) for t in d["t"]],
                    hovertemplate="trial %{text}<br>%{x}<br>" + metric + " %{y:.3f}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            shown.add(str(status))
        if a["best"] is not None:
            fig.add_trace(
                go.Scatter(
                    x=[frame["x"].iloc[0]],
                    y=[a["y"][0]],
                    mode="markers",
                    name="best",
                    legendgroup="best",
                    showlegend=i == 0,
                    hoverinfo="skip",
                    marker={
                        "symbol": "star",
                        "size": 16,
                        "color": "#d62728" if a["edge"] else "#2ca02c",
                    },
                ),
                row=row,
                col=col,
            )
        if not a["numeric"]:
            fig.update_xaxes(
                type="category",
                categoryorder="array",
                categoryarray=[txt(c) for c in a["categories"]],
                row=row,
                col=col,
            )
        else:
            if a["log"]:
                fig.update_xaxes(type="log", row=row, col=col)
            elif a.get("ticks"):
                fig.update_xaxes(tickvals=a["ticks"], row=row, col=col)
            shapes += [vline(i + 1, b, "#bbb") for b in (a["low"], a["high"]) if b is not None]
        fig.update_yaxes(title_text=metric if col == 1 else None, row=row, col=col)
    fig.update_layout(template=TEMPLATE, height=320 * nrows, margin={"t": 50}, shapes=shapes)
    return fig
