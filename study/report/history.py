"""The History section, "how did the study go": best-so-far against trial number and wall time,
each trial's span with why it stopped, and how many trials ran at once: the plain data
(pandas, no Plotly), its figures, and the section's HTML.

Times come from epochs.parquet's ``time`` column (the Unix time of each reported epoch); a trial
starts one epoch duration (``epoch_s``) before its first report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.report.load import StudyData
from study.report.markup import fig_html, note
from study.report.style import TEMPLATE, family_colors, status_style, txt
from study.results.statistics import rank_column

# The runner gives trial n of an Optuna study the seed study_seed * SEED_STRIDE + n.
SEED_STRIDE = 10_000


def optuna_numbers(trials: pd.DataFrame, study_seed: Any) -> pd.Series | None:
    """Optuna's trial number per trial, from its seed (see study.tuning.searcher); None if the seeds
    do
    not fit that rule (another runner, or no study seed)."""
    if (
        "config/seed" not in trials
        or isinstance(study_seed, bool)
        or not isinstance(study_seed, int)
    ):
        return None
    n = pd.to_numeric(trials["config/seed"], errors="coerce") - study_seed * SEED_STRIDE
    if n.isna().any() or not n.between(0, SEED_STRIDE - 1).all():
        return None
    return n.astype(int)


def trial_numbers(trials: pd.DataFrame, study_seed: Any) -> pd.Series:
    """Optuna's trial numbers where known, else the order of the trial ids."""
    numbers = optuna_numbers(trials, study_seed)
    if numbers is not None:
        return numbers
    return (trials["trial_id"].astype(str).rank(method="first") - 1).astype(int)


def best_so_far(values: pd.Series, larger: bool) -> pd.Series:
    """Running best of ``values`` (NaN-skipping): cummax when larger is better, else cummin."""
    v = values.astype(float)
    return v.cummax() if larger else v.cummin()


def by_trial(trials: pd.DataFrame, settings: dict[str, Any], study_seed: Any) -> pd.DataFrame:
    """Each trial's result in trial-number order with the best result so far."""
    column, larger = rank_column(settings)
    t = trials.assign(number=trial_numbers(trials, study_seed)).sort_values("number")
    t = t[t[column].notna()]
    return pd.DataFrame(
        {
            "number": t["number"].to_numpy(),
            "trial_id": t["trial_id"].astype(str).to_numpy(),
            "value": t[column].astype(float).to_numpy(),
            "best": best_so_far(t[column], larger).to_numpy(),
            "status": t["status"].astype(str).to_numpy(),
            "model": t["model"].astype(str).to_numpy(),
        }
    )


def _times(epochs: pd.DataFrame | None) -> pd.DataFrame | None:
    if epochs is None or "time" not in epochs or epochs["time"].isna().all():
        return None
    e = epochs[epochs["time"].notna()].copy()
    if not isinstance(e["time"].dtype, pd.DatetimeTZDtype):  # Unix seconds (schema < 3)
        e["time"] = pd.to_datetime(e["time"].astype(float), unit="s", utc=True)
    return e.sort_values("time", kind="stable")


def by_time(epochs: pd.DataFrame | None, settings: dict[str, Any]) -> pd.DataFrame | None:
    """Best validation accuracy (or loss) reported so far, at each reported epoch's time."""
    e = _times(epochs)
    metric, larger = settings.get("metric", "val_acc"), settings.get("mode", "max") == "max"
    if e is None:
        return None
    if metric not in e:
        metric, larger = "val_acc", True
    return pd.DataFrame(
        {
            "time": e["time"].to_numpy(),
            "trial_id": e["trial_id"].astype(str).to_numpy(),
            "value": e[metric].astype(float).to_numpy(),
            "best": best_so_far(e[metric], larger).to_numpy(),
        }
    )


def timeline(trials: pd.DataFrame, epochs: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per trial with epochs: start, end, status, why it ended, epochs, model."""
    e = _times(epochs)
    if e is None:
        return None
    took = (
        pd.to_timedelta(e["epoch_s"].fillna(0).astype(float), unit="s")
        if "epoch_s" in e
        else pd.to_timedelta(0, unit="s")
    )
    e = e.assign(began=e["time"] - took)
    span = e.groupby("trial_id").agg(
        start=("began", "min"), end=("time", "max"), epochs=("epoch", "max")
    )
    info = trials.set_index(trials["trial_id"].astype(str))
    reason = info["status_reason"] if "status_reason" in info else pd.Series(dtype=object)
    span.index = span.index.astype(str)
    out = (
        span.assign(
            status=info["status"].reindex(span.index).fillna("unknown").astype(str),
            reason=reason.reindex(span.index).fillna("").astype(str),
            model=info["model"].reindex(span.index).fillna("").astype(str),
        )
        .rename_axis("trial_id")
        .reset_index()
    )
    return out.sort_values("start", kind="stable").reset_index(drop=True)


def concurrency(spans: pd.DataFrame) -> pd.DataFrame:
    """Trials running at each start or end time (a step function: +1 at a start, -1 at an end;
    at equal times ends come first, so back-to-back trials do not count as overlapping)."""
    events = pd.concat(
        [
            pd.DataFrame({"time": spans["start"], "delta": 1}),
            pd.DataFrame({"time": spans["end"], "delta": -1}),
        ]
    ).sort_values(["time", "delta"], kind="stable")
    return pd.DataFrame(
        {"time": events["time"].to_numpy(), "running": np.cumsum(events["delta"].to_numpy())}
    )


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


def history_section(d: StudyData, metric: str) -> str:
    """Best so far against trial number and wall time; the trials' timeline and concurrency."""
    t = d.trials
    if t is None or t.empty:
        return note("No trials yet.")
    per_trial = by_trial(t, d.settings, d.meta.get("seed"))
    per_time = by_time(d.epochs, d.settings)
    parts = []
    if len(per_trial):
        parts.append("<h3>Best so far</h3>" + fig_html(history_figure(per_trial, per_time, metric)))
    else:
        parts.append(note("No trial has reported a result yet."))
    spans = timeline(t, d.epochs)
    if spans is None or spans.empty:
        parts.append(note("No epoch times in epochs.parquet: no timeline."))
    else:
        parts.append(
            "<h3>Timeline</h3><p>Each trial from its start to its last epoch, coloured "
            "by how it ended (hover for the reason); below, how many ran at once.</p>"
            + fig_html(timeline_figure(spans, concurrency(spans)))
        )
    return "".join(parts)
