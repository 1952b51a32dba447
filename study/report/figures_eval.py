"""Plotly figure of the cross-study comparison, drawn from ``compute.compare_rows``."""

from __future__ import annotations

import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.report.style import TEMPLATE, txt


def compare_figure(rows: pd.DataFrame) -> go.Figure:
    """Grouped bars per model × data set: test accuracy with 95 % CI, and max val accuracy."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Test accuracy (95 % CI)", "Max validation accuracy")
    )
    group = [txt(f"{m} · {d}") for m, d in zip(rows["model"], rows["data set"], strict=True)]
    rows = rows.assign(group=group)
    for i, (study, d) in enumerate(rows.groupby("study", sort=False)):
        color = pc.qualitative.Plotly[i % len(pc.qualitative.Plotly)]
        common = {
            "name": txt(study),
            "legendgroup": txt(study),
            "marker_color": color,
            "text": [txt(v) for v in d["variant"]],
        }
        fig.add_trace(
            go.Bar(
                x=d["group"],
                y=d["test acc"],
                showlegend=True,
                error_y={
                    "type": "data",
                    "array": d["ci high"] - d["test acc"],
                    "arrayminus": d["test acc"] - d["ci low"],
                },
                hovertemplate="%{x}<br>%{text}<br>test acc %{y:.4f}<extra></extra>",
                textposition="none",
                **common,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                x=d["group"],
                y=d["max val acc"],
                showlegend=False,
                hovertemplate="%{x}<br>%{text}<br>max val acc %{y:.4f}<extra></extra>",
                textposition="none",
                **common,
            ),
            row=1,
            col=2,
        )
    fig.update_layout(template=TEMPLATE, barmode="group", height=430, margin={"t": 50})
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    return fig
