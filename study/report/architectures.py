"""The Architectures section, "which architecture is best, and why": one row per model family and
per scientific variant, a verdict on whether the best family's lead exceeds the noise, the spread
of each family's trials, and each trial's forward cost in GFLOPs per image. The plain data
(pandas/numpy; torch only to count FLOPs, imported when counting), its figure, and the section's
HTML.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from study.report.categories import category_order, decode, label, missing
from study.report.evaluated import test_accuracy
from study.report.leaderboard import probe_bar
from study.report.load import StudyData
from study.report.markup import esc, fig_html, note, table
from study.report.style import TEMPLATE, family_colors, txt
from study.report.trials import DONE, hp_values
from study.results import confirmed
from study.results.statistics import ranked

log = logging.getLogger(__name__)
# Options that change no convolution or matrix product, so not the FLOP count either: leaving
# them out of the cache key spares one model build per dropout value.
_NO_FLOPS = ("dropout", "activation", "head_output")


@functools.cache
def _count_gflops(model: str, options_json: str, num_classes: int, image_size: int) -> float:
    """Forward GFLOPs of one image, counted on the meta device (no weights, no memory)."""
    import torch

    from study.models import count_gflops, create_model

    with torch.device("meta"):
        net = create_model(model, num_classes, **json.loads(options_json))
    return count_gflops(net, image_size)


@functools.cache
def model_fields(model: str) -> frozenset[str]:
    """The option names of a model family (its architecture knobs); empty if unknown here."""
    try:
        from study.models.registry import get_entry

        return frozenset(f.name for f in dataclasses.fields(get_entry(model).options))
    except (ImportError, ValueError):
        return frozenset()


def _model_options(model: str, row: pd.Series) -> dict[str, Any]:
    """The model options of one trial, from its config columns (only the model's own options:
    the config also holds training keys and raw suggestions such as head_width_0)."""
    fields = model_fields(model)
    if not fields:
        from study.models.registry import get_entry

        get_entry(model)  # raises the registry's "unknown model" message
    out = {}
    for name in sorted(fields - set(_NO_FLOPS)):
        value = decode(row.get(f"config/{name}"))
        if value is None:
            continue
        if isinstance(value, str) and value[:1] in "[{":
            value = json.loads(value)
        out[name] = value
    if "pretrained" in fields:
        out["pretrained"] = False  # the cost does not depend on weights; never load any
    return out


def trial_gflops(
    trials: pd.DataFrame, num_classes: int, image_size: int | None
) -> tuple[pd.Series, list[str]]:
    """GFLOPs per image of each trial's model at its image size (NaN where it cannot be counted,
    with one note per reason). A trial counts its own in the worker that builds its model
    (trials.parquet's ``gflops``, NaN until it first reports), used as it is. Only trials that
    reported without one (run before that column) are counted here, which costs this process
    torch and the torch._dynamo that FlopCounterMode imports (about 6 CPU-seconds, more than
    a small report takes)."""
    out = trials.get("gflops", pd.Series(np.nan, index=trials.index)).astype(float)
    epochs = trials["epochs"] if "epochs" in trials else pd.Series(1, index=trials.index)
    todo = trials[out.isna() & (epochs.fillna(0) > 0)]
    notes: list[str] = []
    if todo.empty:
        return out, notes
    try:
        import torch  # noqa: F401 - only to know whether FLOPs can be counted here
    except ImportError:
        return out, ["GFLOPs not shown: PyTorch is not installed where the report was built."]
    for idx, row in todo.iterrows():
        model = str(row.get("model") or "")
        size = decode(row.get("config/image_size")) or image_size
        if not model or not size or num_classes < 1:
            continue
        try:
            options = _model_options(model, row)
            out[idx] = _count_gflops(
                model, json.dumps(options, sort_keys=True), num_classes, int(size)
            )
        except (ValueError, TypeError, RuntimeError) as exc:
            note = f"GFLOPs unknown for model {model}: {exc}"
            if note not in notes:
                notes.append(note)
    return out, notes


def _scientific(hyperparameters: dict[str, dict[str, Any]]) -> list[str]:
    return [n for n, s in hyperparameters.items() if s.get("role") == "scientific" and n != "model"]


def variant_names(family: str, hyperparameters: dict[str, dict[str, Any]]) -> list[str]:
    """The discrete hyperparameters that make a variant of ``family``: the scientific ones and
    the family's own architecture options (vanilla_cnn's depth even where the space calls it a
    nuisance). Continuous knobs (dropout) are no variants: every trial has its own value."""
    own = model_fields(family)
    return [
        n
        for n, s in hyperparameters.items()
        if n != "model" and s.get("kind") != "float" and (s.get("role") == "scientific" or n in own)
    ]


def _row(
    family: str,
    variant: str,
    g: pd.DataFrame,
    predictions: pd.DataFrame | None,
    classes: list[str],
    settings: dict[str, Any],
) -> dict[str, Any]:
    done = g[g["status"].isin(DONE) & g["val_acc_max"].notna()]
    ids = predictions["trial_id"] if predictions is not None else pd.Series(dtype=object)
    evaluated = g[g["test_acc"].notna() | g["trial_id"].isin(ids)]
    r = ranked(evaluated, settings)
    pick = r.iloc[0] if len(r) else (evaluated.iloc[0] if len(evaluated) else None)
    test = test_accuracy(pick, predictions, classes) if pick is not None else None
    params = g["params"][g["params"] > 0]
    return {
        "family": family,
        "variant": variant,
        "trials": len(g),
        "finished": int((g["status"] == "finished").sum()),
        "stopped": int((g["status"] == "stopped").sum()),
        "best max val acc": float(done["val_acc_max"].max()) if len(done) else np.nan,
        "median max val acc": float(done["val_acc_max"].median()) if len(done) else np.nan,
        "test acc": test["acc"] if test else np.nan,
        "ci low": test["low"] if test else np.nan,
        "ci high": test["high"] if test else np.nan,
        "params": float(params.median()) if len(params) else np.nan,
        "GFLOPs": float(g["gflops"].median()) if g["gflops"].notna().any() else np.nan,
    }


def family_table(
    trials: pd.DataFrame,
    hyperparameters: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    predictions: pd.DataFrame | None,
    classes: list[str],
    gflops: pd.Series,
) -> pd.DataFrame:
    """One row per model family (variant 'all'), then per value of each variant hyperparameter
    (``variant_names``) that varies within the family ('extra_inception_3=1'), in category order.

    Best/median are over finished and ASHA-stopped trials; test accuracy is that of the best
    evaluated trial of the row, with its 95 % CI."""
    t = trials.assign(gflops=gflops.reindex(trials.index))
    values = hp_values(t, hyperparameters)
    rows = []
    for family, g in t.groupby(t["model"].astype(str), sort=True):
        rows.append(_row(str(family), "all", g, predictions, classes, settings))
        for name in variant_names(str(family), hyperparameters):
            if name not in values:
                continue
            v = values.loc[g.index, name]
            present = [x for x in v if not missing(x)]
            if len({label(x) for x in present}) < 2:
                continue
            for value in category_order(present, hyperparameters[name].get("choices")):
                mask = [not missing(x) and decode(x) == value for x in v]
                rows.append(
                    _row(
                        str(family),
                        f"{name}={label(value)}",
                        g[mask],
                        predictions,
                        classes,
                        settings,
                    )
                )
    cols = [
        "family",
        "variant",
        "trials",
        "finished",
        "stopped",
        "best max val acc",
        "median max val acc",
        "test acc",
        "ci low",
        "ci high",
        "params",
        "GFLOPs",
    ]
    return pd.DataFrame(rows, columns=cols)


PROBE_VARIANT = "linear probe (frozen)"


def probe_rows(confirm: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    """One row per backbone probed (`study.evaluation.probe`), in the family table's columns:
    its validation accuracy (best over the C grid) as "best max val acc", its test accuracy and
    exact CI; no trials."""
    p = confirmed.probes(confirm)
    return pd.DataFrame(
        {
            "family": p["model"].astype(str),
            "variant": PROBE_VARIANT,
            "trials": 0,
            "finished": 0,
            "stopped": 0,
            "best max val acc": p["val_acc"].astype(float),
            "test acc": p["test_acc"].astype(float),
            "ci low": p["test_acc_ci_low"].astype(float),
            "ci high": p["test_acc_ci_high"].astype(float),
        },
        columns=columns,
    )


def strip_data(trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Max val acc of every finished or stopped trial, by family, with its scientific variant."""
    done = trials[trials["status"].isin(DONE) & trials["val_acc_max"].notna()]
    sci = _scientific(hyperparameters)
    values = hp_values(done, {n: hyperparameters[n] for n in sci}) if sci else None
    variant = [
        ", ".join(f"{n}={label(v)}" for n, v in values.loc[i].items() if not missing(v))
        if values is not None
        else ""
        for i in done.index
    ]
    return pd.DataFrame(
        {
            "family": done["model"].astype(str).to_numpy(),
            "acc": done["val_acc_max"].to_numpy(),
            "trial_id": done["trial_id"].astype(str).to_numpy(),
            "status": done["status"].astype(str).to_numpy(),
            "variant": variant,
        }
    ).sort_values(["family", "acc"], ascending=[True, False], kind="stable")


def verdict(table: pd.DataFrame, n_val: int | None) -> str:
    """One line: the best family, its lead over the next, and whether that exceeds the noise.

    The noise is the overlap of the two families' test 95 % CIs where both were evaluated,
    else the binomial standard error of a difference of two accuracies on ``n_val`` validation
    images (a lower bound: the best of many trials is also biased upward)."""
    fam = table[(table["variant"] == "all") & table["best max val acc"].notna()]
    fam = fam.sort_values("best max val acc", ascending=False)
    if fam.empty:
        return "No model family has a finished or ASHA-stopped trial yet."
    top = fam.iloc[0]
    if len(fam) == 1:
        return f"Only one model family ({top['family']}) has results: nothing to compare it with."
    second = fam.iloc[1]
    lead = top["best max val acc"] - second["best max val acc"]
    head = (
        f"{top['family']} leads {second['family']} by {lead:.3f} in best max val acc "
        f"({top['best max val acc']:.3f} vs {second['best max val acc']:.3f})"
    )
    if all(pd.notna(r[c]) for r in (top, second) for c in ("ci low", "ci high")):
        if top["ci low"] > second["ci high"]:
            return (
                head + f"; the lead exceeds the noise: their test 95 % CIs do not overlap "
                f"({top['ci low']:.3f}–{top['ci high']:.3f} vs "
                f"{second['ci low']:.3f}–{second['ci high']:.3f})."
            )
        return (
            head + f"; within the noise: their test 95 % CIs overlap "
            f"({top['ci low']:.3f}–{top['ci high']:.3f} vs "
            f"{second['ci low']:.3f}–{second['ci high']:.3f})."
        )
    # only one family evaluated on the test split: say so, the CIs cannot be compared
    tested = next((r for r in (top, second) if pd.notna(r["ci low"])), None)
    test = (
        ""
        if tested is None
        else (
            f" On the test split only {tested['family']}'s best was evaluated "
            f"({tested['test acc']:.3f}, 95 % CI {tested['ci low']:.3f}–{tested['ci high']:.3f})."
        )
    )
    if n_val:
        p1, p2 = top["best max val acc"], second["best max val acc"]
        se = math.sqrt(max(p1 * (1 - p1) + p2 * (1 - p2), 1e-12) / n_val)
        if lead > 1.96 * se:
            return (
                head + f"; more than the sampling noise of {n_val} validation images "
                f"(±{1.96 * se:.3f}), though not confirmed on the test split." + test
            )
        return (
            head + f"; within the noise: a difference of up to ±{1.96 * se:.3f} is "
            f"expected from {n_val} validation images alone." + test
        )
    return head + "; the noise is unknown (no test CIs, no validation size in study.json)." + test


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


def _n_val(d: StudyData) -> int | None:
    counts = (d.meta.get("dataset") or {}).get("counts") or {}
    n = counts.get("val")
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def architectures_section(d: StudyData, gflops: pd.Series, gflops_notes: list[str]) -> str:
    """Verdict, one row per family and scientific variant, and the spread per family."""
    t = d.trials
    if t is None or t.empty:
        return note("No trials yet.")
    rows = family_table(t, d.hyperparameters, d.settings, d.predictions, d.classes, gflops)
    probed = probe_rows(d.confirm, list(rows.columns))
    # the verdict compares tuned families; the probes are the bar, in their own rows after
    rows_shown = pd.concat([rows, probed], ignore_index=True) if len(probed) else rows
    shown = rows_shown.drop(columns=["ci low", "ci high"])
    shown.insert(
        shown.columns.get_loc("test acc") + 1,
        "test acc 95% CI",
        [
            f"{lo:.3f}–{hi:.3f}" if pd.notna(lo) else ""
            for lo, hi in zip(rows_shown["ci low"], rows_shown["ci high"], strict=True)
        ],
    )
    parts = [
        f'<p class="verdict"><b>Verdict:</b> {esc(verdict(rows, _n_val(d)))}</p>',
        probe_bar(d),
        "<p>One row per model family (variant <i>all</i>), then one per value of each discrete "
        "scientific hyperparameter or architecture option within it. Best and median are over "
        "finished and ASHA-stopped trials; test accuracy is that of the best evaluated trial of "
        "the row; params and GFLOPs per image are medians."
        + (
            f" Rows <i>{PROBE_VARIANT}</i>: logistic regression on the pretrained backbone's "
            "frozen features, its C chosen on val (its validation accuracy under best max val "
            "acc): the bar tuning must beat."
            if len(probed)
            else ""
        )
        + "</p>",
        table(shown, classes="sortable architectures"),
    ]
    strip = strip_data(t, d.hyperparameters)
    if len(strip):
        parts.append("<h3>Max validation accuracy by family</h3>" + fig_html(family_figure(strip)))
    parts += [note(n) for n in gflops_notes]
    return "".join(parts)
