"""The Hyperparameters section: each searched hyperparameter's values against the study metric,
drawn as parallel coordinates and one panel per hyperparameter, with its categories' order, its
integer ticks and a flag where the best value sits at the edge of the searched range. The plain
data (pandas, no Plotly), its figures, and the section's HTML; the importance subsection's data
and figure are in ``importance.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.report.categories import category_order, label, missing, two_valued
from study.report.importance import importance_figure, param_importances
from study.report.load import StudyData
from study.report.markup import esc, fig_html, note
from study.report.style import TEMPLATE, status_style, txt, vline
from study.report.trials import hp_values
from study.results.statistics import rank_column, ranked


def axis_kind(spec: dict[str, Any], values: pd.Series) -> str:
    """'float', 'int' or 'category': how a hyperparameter's axis is drawn. Two-valued ints
    (0/1 switches) and booleans are categories: two ticks, not a continuous 0-1 axis."""
    kind = spec.get("kind")
    if kind == "int" and two_valued(spec):
        return "category"
    if kind in ("float", "int"):
        return str(kind)
    if kind == "categorical" or not len(values.dropna()):
        return "category"
    present = values.dropna()  # no study.json: judge by the values themselves
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        return "category"
    return "int" if pd.api.types.is_integer_dtype(present) else "float"


def edge(
    value: float, low: float, high: float, log: bool = False, margin: float = 0.1
) -> str | None:
    """'low' or 'high' when ``value`` lies in the outer ``margin`` of [low, high] (in log space
    if log) on a side the range could be widened to. A linear range starting at 0 or below
    cannot go lower (a count, a rate or a probability), so its low edge is never flagged."""
    if high <= low:
        return None
    if log:
        value, low_, high_ = math.log(value), math.log(low), math.log(high)
    else:
        low_, high_ = low, high
    pos = (value - low_) / (high_ - low_)
    if pos <= margin and (log or low > 0):
        return "low"
    return "high" if pos >= 1 - margin else None


def axis_data(
    trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]], settings: dict[str, Any]
) -> list[dict[str, Any]]:
    """One entry per searched hyperparameter: values vs metric (best first), the axis kind,
    the category order or integer ticks, the best value and which edge of its range it is at."""
    column, _ = rank_column(settings)
    r = ranked(trials, settings)
    vals = hp_values(trials, hyperparameters).loc[r.index]
    out = []
    for n in vals.columns:
        spec, values = hyperparameters.get(n, {}), vals[n]
        kind = axis_kind(spec, values)
        numeric = kind != "category"
        cats = [] if numeric else category_order(values, spec.get("choices"))
        entry: dict[str, Any] = {
            "name": n,
            "kind": kind,
            "numeric": numeric,
            "log": bool(spec.get("log", False)),
            # None where a conditional hyperparameter is absent from a trial
            "x": [None if missing(v) else (float(v) if numeric else label(v)) for v in values],
            "categories": [label(c) for c in cats],
            "ticks": None,
            "y": r[column].tolist(),
            "status": r["status"].astype(str).tolist(),
            "trial_id": r["trial_id"].astype(str).tolist(),
            "complete": bool(values.notna().all()),
            "low": spec.get("low"),
            "high": spec.get("high"),
            "best": None,
            "edge": None,
        }
        if numeric and len(values.dropna()):
            num = pd.to_numeric(values)
            low = spec["low"] if spec.get("low") is not None else float(num.min())
            high = spec["high"] if spec.get("high") is not None else float(num.max())
            entry.update(low=low, high=high)
            if kind == "int" and high - low <= 12:  # integer ticks, never 0.5
                entry["ticks"] = list(range(int(low), int(high) + 1))
        if len(r) and entry["x"][0] is not None:
            entry["best"] = entry["x"][0]
            if numeric:
                entry["edge"] = edge(entry["best"], entry["low"], entry["high"], entry["log"])
        entry["at_edge"] = entry["edge"] is not None
        out.append(entry)
    return out


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


def hyperparameters_section(d: StudyData, metric: str) -> str:
    """Parallel coordinates, importance, and the metric against each searched hyperparameter."""
    axes = axis_data(d.trials, d.hyperparameters, d.settings)
    if not axes:
        return note("No searched hyperparameters found in study.json and trials.parquet.")
    if not axes[0]["y"]:
        return note("No trial has reported a validation accuracy yet.")
    full = [a for a in axes if a["complete"]]
    parts = ["<h3>Parallel coordinates</h3>"]
    parts.append(fig_html(parallel_figure(full, metric)) if full else "")
    if len(full) < len(axes):
        parts.append(
            note(
                "Left out of the parallel coordinates (conditional, not set in every "
                "trial): " + ", ".join(a["name"] for a in axes if not a["complete"])
            )
        )
    imp, why, spread = param_importances(d.trials, d.hyperparameters, d.settings)
    parts.append("<h3>Importance</h3>")
    parts.append(
        fig_html(importance_figure(imp, spread)) + f"<p>{esc(why)}</p>" if imp else note(why)
    )
    at_edge = [f"{a['name']} ({a['edge']} end)" for a in axes if a["edge"]]
    parts.append("<h3>Each hyperparameter</h3>")
    if at_edge:
        parts.append(
            note(
                "Best value at the edge of its search range (consider widening it on "
                "that side): " + ", ".join(at_edge)
            )
        )
    parts.append(fig_html(axis_figure(axes, metric)))
    return "".join(parts)
