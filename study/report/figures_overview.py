"""Plotly figures of the Architectures and History sections, drawn from the plain data of
``architectures.py`` and ``history.py`` (labels escaped with ``figures.txt``)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.report.style import TEMPLATE, family_colors, status_style, txt


def family_figure(strip: pd.DataFrame, metric: str = "max val acc") -> go.Figure:
    """A box with every trial as a point, per model family: the spread behind each best."""
    colors = family_colors(strip["family"].tolist())
    fig = go.Figure()
    for family, d in strip.groupby("family", sort=True):
        fig.add_trace(
            go.Box(
                y=d["acc"],
                name=txt(family),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": colors[str(family)], "size": 8},
                line={"color": colors[str(family)]},
                fillcolor="rgba(0,0,0,0)",
                text=[
                    f"trial {txt(t)} ({txt(s)})<br>{txt(v)}"
                    for t, s, v in zip(d["trial_id"], d["status"], d["variant"], strict=True)
                ],
                hovertemplate="%{text}<br>" + metric + " %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        height=380,
        showlegend=False,
        yaxis_title=metric,
        xaxis_title="model family (finished and ASHA-stopped trials)",
        margin={"t": 30},
    )
    return fig


def history_figure(by_trial: pd.DataFrame, by_time: pd.DataFrame | None, metric: str) -> go.Figure:
    """Best so far against the trial number and, where epochs carry times, against wall time."""
    cols = 2 if by_time is not None and len(by_time) else 1
    fig = make_subplots(
        rows=1,
        cols=cols,
        subplot_titles=("by trial number", "by wall time (every reported epoch)")[:cols],
    )
    colors = family_colors(by_trial["model"].tolist())
    for family, d in by_trial.groupby("model", sort=True):
        fig.add_trace(
            go.Scatter(
                x=d["number"],
                y=d["value"],
                mode="markers",
                name=txt(family),
                marker={"color": colors[str(family)], "size": 8},
                text=[
                    f"{txt(t)} ({txt(s)})" for t, s in zip(d["trial_id"], d["status"], strict=True)
                ],
                hovertemplate="trial #%{x} %{text}<br>" + metric + " %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=by_trial["number"],
            y=by_trial["best"],
            mode="lines",
            name="best so far",
            line={"shape": "hv", "color": "#2ca02c", "width": 3},
            hovertemplate="after trial #%{x}: best %{y:.3f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    if cols == 2:
        fig.add_trace(
            go.Scatter(
                x=by_time["time"],
                y=by_time["value"],
                mode="markers",
                name="an epoch",
                marker={"color": "#9a9a9a", "size": 4},
                opacity=0.6,
                text=[txt(t) for t in by_time["trial_id"]],
                hovertemplate="%{x}<br>trial %{text}: %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter(
                x=by_time["time"],
                y=by_time["best"],
                mode="lines",
                name="best so far (time)",
                line={"shape": "hv", "color": "#2ca02c", "width": 3},
                showlegend=False,
                text=[txt(t) for t in by_time["trial_id"]],
                hovertemplate="%{x}<br>best %{y:.3f} (epoch of %{text})<extra></extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="Optuna trial number", row=1, col=1)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(template=TEMPLATE, height=380, margin={"t": 50})
    return fig


def timeline_figure(spans: pd.DataFrame, running: pd.DataFrame) -> go.Figure:
    """Each trial as a bar from start to end, coloured by how it ended; below, how many trials
    ran at once."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.05
    )
    ms = (spans["end"] - spans["start"]).dt.total_seconds() * 1000
    labels = [txt(t) for t in spans["trial_id"]]
    for status, d in spans.assign(ms=ms, label=labels).groupby("status", sort=False):
        color, _, name = status_style(str(status))
        fig.add_trace(
            go.Bar(
                base=d["start"],
                x=d["ms"],
                y=d["label"],
                orientation="h",
                name=name,
                marker_color=color,
                customdata=[
                    [txt(m), txt(r), int(e), f"{s / 1000:.0f} s"]
                    for m, r, e, s in zip(
                        d["model"], d["reason"], d["epochs"], d["ms"], strict=True
                    )
                ],
                hovertemplate="trial %{y} · %{customdata[0]}<br>started %{base|%H:%M:%S}, ran "
                "%{customdata[3]}<br>%{customdata[2]} epochs · %{customdata[1]}"
                "<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=running["time"],
            y=running["running"],
            mode="lines",
            name="running at once",
            line={"shape": "hv", "color": "#2a3f5f"},
            hovertemplate="%{x|%H:%M:%S}: %{y} running<extra></extra>",
        ),
        row=2,
        col=1,
    )
    fig.update_xaxes(type="date", row=1, col=1)
    fig.update_xaxes(type="date", title_text="wall time (UTC)", row=2, col=1)
    fig.update_yaxes(
        autorange="reversed",
        title_text="trial (by start)",
        type="category",
        categoryorder="array",
        categoryarray=labels,
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="running", rangemode="tozero", dtick=1, row=2, col=1)
    fig.update_layout(
        template=TEMPLATE, height=260 + 18 * len(spans), barmode="overlay", margin={"t": 30}
    )
    return fig
