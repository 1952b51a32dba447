"""The comparison page of several studies (the seed's results table): the best trial per study ×
model × data set with its test accuracy and 95 % CI, as a table and as grouped bars. The plain
data (pandas), its figure, and the page's sections.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.report.evaluated import test_accuracy
from study.report.load import StudyData
from study.report.markup import Section, fig_html, note, table
from study.report.style import TEMPLATE, txt
from study.report.summary import is_smoke
from study.report.trials import best_trial, variants


def compare_rows(studies: list[StudyData]) -> pd.DataFrame:
    """The seed's results table across studies: best trial per study × model × data set."""
    rows = []
    for s in studies:
        if s.trials is None or s.trials.empty:
            continue
        for (model, dataset), group in s.trials.groupby(["model", "dataset"], sort=True):
            best = best_trial(group, s.settings)
            if best is None:
                continue
            test = test_accuracy(best, s.predictions, s.classes) or {}
            rows.append(
                {
                    "study": s.name + (" (smoke test)" if is_smoke(s.meta) else ""),
                    "space": str(s.meta.get("space", "")),
                    "model": str(model),
                    "data set": str(dataset),
                    "variant": variants(best.to_frame().T, s.hyperparameters).iloc[0],
                    "trial": str(best["trial_id"]),
                    "avg val acc": float(best["val_acc_avg"]),
                    "max val acc": float(best["val_acc_max"]),
                    "test acc": test.get("acc", np.nan),
                    "ci low": test.get("low", np.nan),
                    "ci high": test.get("high", np.nan),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "study",
            "space",
            "model",
            "data set",
            "variant",
            "trial",
            "avg val acc",
            "max val acc",
            "test acc",
            "ci low",
            "ci high",
        ],
    )


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


def compare_sections(rows: pd.DataFrame) -> list[Section]:
    """The comparison page's results table (best trial per study × model × data set) and its
    grouped bars; a note alone when no study has a ranked trial."""
    out: list[Section] = []
    if rows.empty:
        out.append(("results", "Results", note("None of the studies has a ranked trial.")))
    else:
        shown = rows.assign(
            **{
                "test acc 95% CI": [
                    f"{lo:.3f}–{hi:.3f}" if pd.notna(lo) else ""
                    for lo, hi in zip(rows["ci low"], rows["ci high"], strict=True)
                ]
            }
        ).drop(columns=["ci low", "ci high"])
        out.append(("results", "Results (best trial per study × model × data set)", table(shown)))
        out.append(("charts", "Grouped bars", fig_html(compare_figure(rows))))
    return out
