"""The "Accuracy against cost" section: each trial's accuracy against its parameters, GFLOPs per
image and epoch time, with the Pareto front of trials no other is both cheaper and more accurate
than. The plain data (pandas/numpy, no Plotly), its figure, and the section's HTML.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.report.load import StudyData
from study.report.markup import fig_html, note
from study.report.style import TEMPLATE, txt
from study.results.statistics import rank_column, ranked


def pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Mask of points not dominated by another with cost <= and acc >= (one strictly)."""
    c, a = np.asarray(cost, dtype=float), np.asarray(acc, dtype=float)
    no_worse = (c[None, :] <= c[:, None]) & (a[None, :] >= a[:, None])
    better = (c[None, :] < c[:, None]) | (a[None, :] > a[:, None])
    return ~(no_worse & better).any(axis=1)


COSTS = {
    "params": "parameters",
    "gflops": "GFLOPs per image",
    "epoch_s_mean": "epoch time (s), depends on machine load",
}


def cost_data(
    trials: pd.DataFrame, settings: dict[str, Any], gflops: pd.Series | None = None
) -> dict[str, pd.DataFrame]:
    """Per cost (params, GFLOPs per image, epoch time): accuracy, cost, model and Pareto-front
    membership. GFLOPs measure the model; epoch seconds also measure how busy the machine was."""
    column, _ = rank_column(settings)
    t = trials.assign(gflops=np.nan if gflops is None else gflops.reindex(trials.index))
    r = ranked(t, settings)
    out = {}
    for cost in COSTS:
        d = r[r[cost].notna() & (r[cost] > 0)]  # 0 = not reported (would dominate all)
        if cost == "gflops" and d.empty:
            continue
        d = pd.DataFrame(
            {
                "trial_id": d["trial_id"].astype(str),
                "cost": d[cost].astype(float),
                "acc": d[column].astype(float),
                "status": d["status"].astype(str),
                "model": d["model"].astype(str),
            }
        ).sort_values("cost")
        out[cost] = d.assign(on_front=pareto_front(d["cost"].to_numpy(), d["acc"].to_numpy()))
    return out


def cost_figure(costs: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """Accuracy against each cost; the Pareto front joined by a step line, model in the hover."""
    fig = make_subplots(rows=1, cols=len(costs), subplot_titles=[COSTS[k] for k in costs])
    for col, (key, d) in enumerate(costs.items(), start=1):
        front = d[d["on_front"]]
        for part, name, color, mode in (
            (d[~d["on_front"]], "dominated", "#9a9a9a", "markers"),
            (front, "Pareto front", "#d62728", "lines+markers"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=part["cost"],
                    y=part["acc"],
                    mode=mode,
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line={"shape": "hv", "color": color},
                    marker={"color": color, "size": 8},
                    text=[
                        f"{txt(t)} · {txt(m)}"
                        for t, m in zip(part["trial_id"], part["model"], strict=True)
                    ],
                    hovertemplate="trial %{text}<br>%{x:.4g}<br>"
                    + metric
                    + " %{y:.3f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(
            title_text=COSTS[key], type="log" if key != "epoch_s_mean" else None, row=1, col=col
        )
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(template=TEMPLATE, height=420, margin={"t": 50})
    return fig


def costs_section(d: StudyData, metric: str, gflops: pd.Series) -> str:
    """Accuracy against parameters, GFLOPs per image and epoch time, with the Pareto front."""
    costs = cost_data(d.trials, d.settings, gflops)
    if all(c.empty for c in costs.values()):
        return note("No trial with both accuracy and cost recorded yet.")
    return (
        "<p>Red: Pareto front (no other trial is both cheaper and more accurate). GFLOPs per "
        "image measure the model alone; epoch seconds also measure how busy the machine was "
        "(the same configuration can take three times longer on a loaded machine).</p>"
        + fig_html(cost_figure(costs, metric))
    )
