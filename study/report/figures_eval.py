"""Plotly figures of the test split (confusion matrix), the cross-study comparison and the
Grad-CAM overlays, drawn from the plain data of ``evaluation.py`` and ``compute.py``."""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from study.report.style import TEMPLATE, txt


def confusion_figure(normalised: pd.DataFrame, counts: pd.DataFrame) -> go.Figure:
    """Row-normalised confusion matrix (rows: true class), counts in the hover."""
    names = [txt(c) for c in normalised.index]
    z = normalised.to_numpy(dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            text=np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.2f}")(np.nan_to_num(z))),
            texttemplate="%{text}",
            customdata=counts.to_numpy(),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.3f} (%{customdata} images)"
            "<extra></extra>",
            colorbar={"title": {"text": "share of true class"}},
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        height=220 + 45 * len(names),
        xaxis_title="predicted",
        yaxis_title="true",
        margin={"t": 30},
    )
    fig.update_yaxes(autorange="reversed")
    return fig


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
