"""Plotly figures drawn from the plain data of ``compute.py``.

Plotly renders ``<b>``-style pseudo-HTML in labels and decodes ``&lt;``/``&gt;``/``&amp;``, so every
user-provided string (class names, trial ids, config values) goes through ``txt`` and shows as
literal text.
"""

from __future__ import annotations

import functools
import html
import io
import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

TEMPLATE = "plotly_white"
# How each trial status is drawn in curves and scatter plots: (colour, dash, legend name).
STYLE = {
    "finished": ("#1f77b4", "solid", "finished"),
    "stopped": ("#9a9a9a", "dash", "stopped by ASHA"),
    "running": ("#ff7f0e", "solid", "running"),
    "errored": ("#d62728", "dot", "errored"),
    "diverged": ("#8c564b", "dot", "diverged"),
    "unknown": ("#7f7f7f", "dot", "unknown status"),
}


def txt(value: Any) -> str:
    """Text safe for Plotly labels: Plotly decodes these entities back, so it shows literally."""
    return html.escape(str(value), quote=False)


def _style(status: str) -> tuple[str, str, str]:
    return STYLE.get(status, STYLE["unknown"])


def learning_curves_figure(curves: pd.DataFrame, rungs: list[int], best: str | None) -> go.Figure:
    """Val accuracy and loss per epoch for every trial; ASHA-stopped dashed grey, rungs dotted."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Validation accuracy", "Validation loss"))
    shown: set[str] = set()
    for trial_id, c in curves.groupby("trial_id", sort=False):
        status = str(c["status"].iloc[0])
        color, dash, label = _style(status)
        is_best = str(trial_id) == best
        for col, y in ((1, "val_acc"), (2, "val_loss")):
            fig.add_trace(go.Scatter(
                x=c["epoch"], y=c[y], mode="lines+markers", name="best trial" if is_best else label,
                legendgroup="best" if is_best else status,
                showlegend=col == 1 and (is_best or status not in shown),
                line={"color": "#2ca02c" if is_best else color, "dash": dash,
                      "width": 3.5 if is_best else 1.5},
                marker={"size": 4}, opacity=1.0 if is_best else 0.75,
                text=[txt(trial_id)] * len(c),
                hovertemplate=f"trial %{{text}}<br>epoch %{{x}}<br>{y} %{{y:.4f}}<extra></extra>",
            ), row=1, col=col)
        if not is_best:
            shown.add(status)
    stopped = curves[curves["status"] == "stopped"].groupby("trial_id").tail(1)
    for col, y in ((1, "val_acc"), (2, "val_loss")):
        if len(stopped):
            fig.add_trace(go.Scatter(
                x=stopped["epoch"], y=stopped[y], mode="markers", name="ASHA stop",
                legendgroup="stop", showlegend=col == 1,
                marker={"symbol": "x", "size": 9, "color": "#555"},
                text=[txt(t) for t in stopped["trial_id"]],
                hovertemplate="trial %{text} stopped at epoch %{x}<extra></extra>",
            ), row=1, col=col)
    for r in rungs:
        fig.add_vline(x=r, line_dash="dot", line_color="#aa66cc", row="all", col="all")
    fig.update_xaxes(title_text="epoch (dotted: ASHA rungs)" if rungs else "epoch")
    fig.update_layout(template=TEMPLATE, height=430, margin={"t": 50})
    return fig


def _encode(axis: dict[str, Any]) -> dict[str, Any]:
    """A parcoords dimension: log floats on a log10 scale, categories as codes with labels."""
    name = txt(axis["name"])
    if axis["numeric"]:
        values = np.asarray(axis["x"], dtype=float)
        if axis["log"]:
            return {"label": f"log10 {name}", "values": np.log10(values)}
        return {"label": name, "values": values}
    cats = sorted(set(axis["x"]))
    codes = {c: i for i, c in enumerate(cats)}
    return {"label": name, "values": [codes[v] for v in axis["x"]],
            "tickvals": list(range(len(cats))), "ticktext": [txt(c) for c in cats]}


def parallel_figure(axes: list[dict[str, Any]], metric: str) -> go.Figure:
    """Parallel coordinates of the searched hyperparameters against the study metric."""
    y = axes[0]["y"]  # every axis lists the same trials in the same order
    dims = [_encode(a) for a in axes] + [{"label": metric, "values": y}]
    fig = go.Figure(go.Parcoords(
        line={"color": y, "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": metric}}},
        dimensions=dims,
    ))
    fig.update_layout(template=TEMPLATE, height=420, margin={"l": 60, "r": 60, "t": 60})
    return fig


def importance_figure(importances: dict[str, float]) -> go.Figure:
    names = list(importances)[::-1]  # most important on top
    fig = go.Figure(go.Bar(
        x=[importances[n] for n in names], y=[txt(n) for n in names], orientation="h",
        hovertemplate="%{y}: %{x:.3f}<extra></extra>", marker_color="#1f77b4",
    ))
    fig.update_layout(template=TEMPLATE, height=120 + 40 * len(names),
                      xaxis_title="importance (PED-ANOVA, normalised)", margin={"t": 30})
    return fig


def axis_figure(axes: list[dict[str, Any]], metric: str) -> go.Figure:
    """One panel per searched hyperparameter: metric vs value, best starred, edge flagged."""
    ncols = min(3, len(axes))
    nrows = math.ceil(len(axes) / ncols)
    titles = [txt(a["name"]) + (" ⚠ best at edge of range" if a["at_edge"] else "") for a in axes]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles)
    shown: set[str] = set()
    for i, a in enumerate(axes):
        row, col = i // ncols + 1, i % ncols + 1
        x = a["x"] if a["numeric"] else [None if v is None else txt(v) for v in a["x"]]
        frame = pd.DataFrame({"x": x, "y": a["y"], "status": a["status"], "t": a["trial_id"]})
        frame = frame[frame["x"].notna()]  # trials without this (conditional) hyperparameter
        for status, d in frame.groupby("status", sort=False):
            color, _, label = _style(str(status))
            fig.add_trace(go.Scatter(
                x=d["x"], y=d["y"], mode="markers", name=label, legendgroup=str(status),
                showlegend=status not in shown, marker={"color": color, "size": 8},
                text=[txt(t) for t in d["t"]],
                hovertemplate="trial %{text}<br>%{x}<br>" + metric + " %{y:.4f}<extra></extra>",
            ), row=row, col=col)
            shown.add(str(status))
        if a["best"] is not None:
            fig.add_trace(go.Scatter(
                x=[frame["x"].iloc[0]], y=[a["y"][0]], mode="markers", name="best",
                legendgroup="best",
                showlegend=i == 0, hoverinfo="skip",
                marker={"symbol": "star", "size": 16,
                        "color": "#d62728" if a["at_edge"] else "#2ca02c"},
            ), row=row, col=col)
        if a["numeric"]:
            if a["log"]:
                fig.update_xaxes(type="log", row=row, col=col)
            for bound in (a["low"], a["high"]):
                if bound is not None:
                    fig.add_vline(x=bound, line_dash="dot", line_color="#bbb", row=row, col=col)
        fig.update_yaxes(title_text=metric if col == 1 else None, row=row, col=col)
    fig.update_layout(template=TEMPLATE, height=320 * nrows, margin={"t": 50})
    return fig


def cost_figure(costs: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """Accuracy against parameters and epoch time; the Pareto front joined by a step line."""
    labels = {"params": "parameters", "epoch_s_mean": "epoch time (s)"}
    fig = make_subplots(rows=1, cols=2, subplot_titles=[labels[k] for k in costs])
    for col, (key, d) in enumerate(costs.items(), start=1):
        front = d[d["on_front"]]
        for part, name, color, mode in (
            (d[~d["on_front"]], "dominated", "#9a9a9a", "markers"),
            (front, "Pareto front", "#d62728", "lines+markers"),
        ):
            fig.add_trace(go.Scatter(
                x=part["cost"], y=part["acc"], mode=mode, name=name, legendgroup=name,
                showlegend=col == 1, line={"shape": "hv", "color": color},
                marker={"color": color, "size": 8}, text=[txt(t) for t in part["trial_id"]],
                hovertemplate="trial %{text}<br>%{x:.4g}<br>" + metric + " %{y:.4f}<extra></extra>",
            ), row=1, col=col)
        fig.update_xaxes(title_text=labels[key], type="log" if key == "params" else None,
                         row=1, col=col)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(template=TEMPLATE, height=420, margin={"t": 50})
    return fig


def confusion_figure(normalised: pd.DataFrame, counts: pd.DataFrame) -> go.Figure:
    """Row-normalised confusion matrix (rows: true class), counts in the hover."""
    names = [txt(c) for c in normalised.index]
    z = normalised.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=names, colorscale="Blues", zmin=0, zmax=1,
        text=np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.2f}")(np.nan_to_num(z))),
        texttemplate="%{text}", customdata=counts.to_numpy(),
        hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.3f} (%{customdata} images)"
        "<extra></extra>",
        colorbar={"title": {"text": "share of true class"}},
    ))
    fig.update_layout(template=TEMPLATE, height=220 + 45 * len(names),
                      xaxis_title="predicted", yaxis_title="true", margin={"t": 30})
    fig.update_yaxes(autorange="reversed")
    return fig


def compare_figure(rows: pd.DataFrame) -> go.Figure:
    """Grouped bars per model × data set: test accuracy with 95 % CI, and max val accuracy."""
    fig = make_subplots(rows=1, cols=2,
                        subplot_titles=("Test accuracy (95 % CI)", "Max validation accuracy"))
    group = [txt(f"{m} · {d}") for m, d in zip(rows["model"], rows["data set"], strict=True)]
    rows = rows.assign(group=group)
    for i, (study, d) in enumerate(rows.groupby("study", sort=False)):
        color = pc.qualitative.Plotly[i % len(pc.qualitative.Plotly)]
        common = {"name": txt(study), "legendgroup": txt(study), "marker_color": color,
                  "text": [txt(v) for v in d["variant"]]}
        fig.add_trace(go.Bar(
            x=d["group"], y=d["test acc"], showlegend=True, error_y={
                "type": "data", "array": d["ci high"] - d["test acc"],
                "arrayminus": d["test acc"] - d["ci low"]},
            hovertemplate="%{x}<br>%{text}<br>test acc %{y:.4f}<extra></extra>",
            textposition="none", **common), row=1, col=1)
        fig.add_trace(go.Bar(
            x=d["group"], y=d["max val acc"], showlegend=False,
            hovertemplate="%{x}<br>%{text}<br>max val acc %{y:.4f}<extra></extra>",
            textposition="none", **common), row=1, col=2)
    fig.update_layout(template=TEMPLATE, barmode="group", height=430, margin={"t": 50})
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    return fig


@functools.cache
def _turbo_lut() -> np.ndarray:
    colors = pc.sample_colorscale("Turbo", list(np.linspace(0, 1, 256)))
    return np.array([pc.unlabel_rgb(c) for c in colors], dtype=np.uint8)


def gradcam_overlay(image_png: bytes, cam: Any, side: int, alpha: float = 0.45) -> bytes:
    """The image with its Grad-CAM map (values in [0, 1]) blended on top, as PNG bytes."""
    img = Image.open(io.BytesIO(image_png)).convert("RGB")
    heat = np.clip(np.asarray(cam, dtype=np.float32).reshape(side, side), 0, 1)
    colored = Image.fromarray(_turbo_lut()[(heat * 255).astype(np.uint8)], "RGB")
    colored = colored.resize(img.size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    Image.blend(img, colored, alpha).save(buf, format="PNG")
    return buf.getvalue()
