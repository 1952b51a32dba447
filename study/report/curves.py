"""The Learning curves section: validation accuracy, validation loss and training loss per epoch
of every trial, coloured by model family, with ASHA's rungs and the chance level. The plain data
(pandas, no Plotly), its figure, and the section's HTML.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.report.load import StudyData
from study.report.markup import esc, fig_html, note
from study.report.style import TEMPLATE, family_colors, status_style, txt, vline
from study.report.trials import best_trial, variants
from study.spaces.settings import stopped_early


def rung_epochs(rungs: pd.DataFrame | None, max_epochs: int | None) -> list[int]:
    """The epochs at which ASHA compared trials, as it recorded them in asha_rungs.parquet (not
    recomputed from the settings: a rung no trial reached has no record), below max_epochs
    (a trial that reaches max_epochs finishes)."""
    if rungs is None or rungs.empty:
        return []
    milestones = sorted({int(m) for m in rungs["milestone"].dropna()})
    return [m for m in milestones if max_epochs is None or m < max_epochs]


def key_config(trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]]) -> pd.Series:
    """'name=value, ...' of the scientific hyperparameters per trial (all searched ones when
    study.json names none), for hover texts."""
    sci = {
        n: s for n, s in hyperparameters.items() if s.get("role") == "scientific" and n != "model"
    }
    return variants(trials, sci or hyperparameters)


def learning_curves(
    epochs: pd.DataFrame,
    trials: pd.DataFrame | None,
    hyperparameters: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Per trial-epoch val acc/loss and train loss, with the trial's status ('unknown' without
    trials table), model family and key configuration."""
    cols = ["trial_id", "epoch", "val_acc", "val_loss"]
    curves = epochs[cols + (["train_loss"] if "train_loss" in epochs else [])]
    curves = curves.sort_values(["trial_id", "epoch"]).reindex(columns=cols + ["train_loss"])
    if trials is None:
        return curves.assign(status="unknown", model="", config="")
    info = trials.set_index(trials["trial_id"].astype(str))
    config = key_config(trials, hyperparameters or {})
    config.index = info.index
    ids = curves["trial_id"].astype(str)
    return curves.assign(
        status=ids.map(info["status"].astype(str)).fillna("unknown"),
        model=ids.map(info["model"].astype(str)).fillna(""),
        config=ids.map(config).fillna(""),
    )


CURVE_PANELS = (
    ("val_acc", "Validation accuracy"),
    ("val_loss", "Validation loss"),
    ("train_loss", "Training loss"),
)


def learning_curves_figure(
    curves: pd.DataFrame, rungs: list[int], best: str | None, chance: float | None = None
) -> go.Figure:
    """Val accuracy, val loss and train loss per epoch for every trial, coloured by model
    family; ASHA-stopped trials dashed, the best thick, rungs dotted, chance level dashed."""
    panels = [(k, t) for k, t in CURVE_PANELS if k != "train_loss" or curves[k].notna().any()]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t in panels])
    colors = family_colors([m or "model" for m in curves["model"]])
    for family, color in colors.items():  # legend entries drawn solid, whatever comes first
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name=txt(family),
                legendgroup=family,
                line={"color": color},
            ),
            row=1,
            col=1,
        )
    for trial_id, c in curves.groupby("trial_id", sort=False):
        status, family = str(c["status"].iloc[0]), str(c["model"].iloc[0]) or "model"
        _, dash, _ = status_style(status)
        is_best = str(trial_id) == best
        hover = (
            f"trial {txt(trial_id)} · {txt(family)} ({txt(status)})<br>"
            f"{txt(c['config'].iloc[0])}<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>"
        )
        for col, (y, _) in enumerate(panels, start=1):
            fig.add_trace(
                go.Scatter(
                    x=c["epoch"],
                    y=c[y],
                    mode="lines+markers",
                    name=f"{txt(family)} (best trial)" if is_best else txt(family),
                    legendgroup="best" if is_best else family,
                    showlegend=col == 1 and is_best,
                    line={
                        "color": colors[family],
                        "dash": "solid" if is_best else dash,
                        "width": 4 if is_best else 1.5,
                    },
                    marker={"size": 4},
                    opacity=1.0 if is_best else 0.7,
                    hovertemplate=hover,
                ),
                row=1,
                col=col,
            )
    stopped = curves[curves["status"] == "stopped"].groupby("trial_id").tail(1)
    for col, (y, _) in enumerate(panels, start=1):
        if len(stopped):
            fig.add_trace(
                go.Scatter(
                    x=stopped["epoch"],
                    y=stopped[y],
                    mode="markers",
                    name="early stop",
                    legendgroup="stop",
                    showlegend=col == 1,
                    marker={"symbol": "x", "size": 9, "color": "#555"},
                    text=[txt(t) for t in stopped["trial_id"]],
                    hovertemplate="trial %{text} stopped at epoch %{x}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_layout(
        shapes=[vline(p, r, "#aa66cc") for r in rungs for p in range(1, len(panels) + 1)]
    )
    if chance is not None:
        fig.add_hline(
            y=chance,
            line_dash="dash",
            line_color="#d62728",
            row=1,
            col=1,
            annotation_text=f"chance {chance:.3f}",
            annotation_position="bottom right",
        )
    fig.update_xaxes(title_text="epoch (dotted: ASHA rungs)" if rungs else "epoch")
    fig.update_layout(template=TEMPLATE, height=430, margin={"t": 50})
    return fig


def curves_section(d: StudyData) -> str:
    """Val accuracy, val loss and train loss per epoch of every trial, with the rungs and chance."""
    if d.epochs is None or d.epochs.empty:
        return note("No epochs recorded yet.")
    s = d.settings
    rungs = rung_epochs(d.rungs, int(s["max_epochs"]) if "max_epochs" in s else None)
    best = best_trial(d.trials, s) if d.trials is not None else None
    chance = 1 / len(d.classes) if d.classes else None
    fig = learning_curves_figure(
        learning_curves(d.epochs, d.trials, d.hyperparameters),
        rungs,
        None if best is None else str(best["trial_id"]),
        chance,
    )
    rung_text = "; dotted purple lines: ASHA rungs" if rungs else ""
    chance_text = "; red dashed line: chance (1 / number of classes)" if chance else ""
    return (
        f"<p>Colour: model family. Dashed: {esc(stopped_early(s.get('scheduler')))} "
        "(× marks the stop)"
        f"{rung_text}; thick: best trial{chance_text}. Hover a line for its configuration."
        "</p>" + fig_html(fig)
    )
