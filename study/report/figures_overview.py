"""Plotly figures of the Architectures and History sections, drawn from the plain data of
``architectures.py`` and ``history.py`` (labels escaped with ``figures.txt``)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from study.report.style import TEMPLATE, family_colors, txt


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
