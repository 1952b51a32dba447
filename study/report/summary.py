"""The Summary section and the page's head: what the study is (data set, space, settings), how
far it got (trials per status, compute used, the best trial so far), whether it was a smoke test,
and the "running" banner of a study that has not finished. The plain data (pandas) and the HTML.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from study.report.categories import decode, label, missing
from study.report.evaluated import test_accuracy
from study.report.load import StudyData
from study.report.markup import ci_text, dl, esc
from study.report.trials import best_trial, hp_values
from study.results.statistics import RANK_COLUMNS
from study.spaces.settings import stopped_early

# Config keys the runner adds to every trial (see study.run.overrides.resolve): not searched, not
# settings a reader chose, so the summary lists them apart.
INTERNAL = ("metric", "mode", "num_threads", "seed", "suggested")
STATUSES = ("finished", "stopped", "errored", "diverged", "running")


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trials per status: every known status (0 if none), unknown ones by name, and 'total'."""
    counts = {s: 0 for s in STATUSES}
    counts.update({str(k): int(v) for k, v in trials["status"].value_counts().items()})
    counts["total"] = len(trials)
    return counts


def compute_used(trials: pd.DataFrame, epochs: pd.DataFrame | None) -> dict[str, Any]:
    """Summed trial wall time, epochs trained and the devices used."""
    devices = trials["device"].value_counts() if "device" in trials else pd.Series(dtype=int)
    n_epochs = len(epochs) if epochs is not None else int(trials["epochs"].fillna(0).sum())
    return {
        "trial_hours": float(trials["wall_s"].fillna(0).sum()) / 3600.0,
        "epochs": int(n_epochs),
        "devices": {str(k): int(v) for k, v in devices.items()},
    }


def rank_note(settings: dict[str, Any]) -> str | None:
    """A note for "What is missing" when the study metric has no column to rank by, else None."""
    key = (settings.get("metric", "val_acc"), settings.get("mode", "max"))
    if key in RANK_COLUMNS:
        return None
    return (
        f"The study metric {key[0]!r} ({key[1]}) has no column in trials.parquet; trials are "
        f"ranked by max validation accuracy instead (supported: {sorted(RANK_COLUMNS)})."
    )


def config_split(
    trials: pd.DataFrame, hyperparameters: dict[str, dict[str, Any]]
) -> dict[str, dict[str, str]]:
    """The config columns in three groups for the summary: 'searched' (the search space, as
    study.json declares it), 'fixed' (the same in every trial) and 'internal' (keys the runner
    adds: metric, mode, threads, per-trial seed). Config keys that vary but are not declared
    (derived from searched ones, e.g. lr from lr_adam) are left to the leaderboard."""
    searched = {}
    for name, spec in hyperparameters.items():
        if spec.get("role") == "fixed":
            continue
        if spec.get("kind") == "categorical":
            searched[name] = ", ".join(label(c) for c in spec.get("choices") or [])
        else:
            searched[name] = f"{label(spec.get('low'))} … {label(spec.get('high'))}" + (
                " (log)" if spec.get("log") else ""
            )
    fixed, internal = {}, {}
    for col in sorted(c for c in trials.columns if str(c).startswith("config/")):
        name = col.removeprefix("config/")
        if name in searched or name == "suggested":  # the searched values again, as JSON
            continue
        values = {label(v) for v in trials[col] if not missing(decode(v))}
        if name in INTERNAL:
            internal[name] = "per trial" if len(values) > 1 else next(iter(values), "")
        elif len(values) == 1:
            fixed[name] = next(iter(values))
    return {"searched": searched, "fixed": fixed, "internal": internal}


def is_smoke(meta: dict[str, Any]) -> bool:
    """Whether the study ran with --smoke-test (2 trials x 2 epochs at a tiny size)."""
    return bool((meta.get("settings") or {}).get("smoke_test"))


def smoke_note(meta: dict[str, Any]) -> str | None:
    """What --smoke-test changed, for the summary (the description is the full study's)."""
    if not is_smoke(meta):
        return None
    s = meta.get("settings") or {}
    shown = ", ".join(
        f"{k} {s[k]}" for k in ("num_samples", "max_epochs", "image_size") if s.get(k) is not None
    )
    return (
        f"SMOKE TEST: a quick check that the study runs, not a result ({shown}; the space's "
        f"smoke overrides also shrink the models, see the fixed settings). The description "
        f"above is the full study's."
    )


def summary_section(d: StudyData) -> str:
    """The study at a glance: data set, trials, compute used, best trial, searched and fixed
    settings; the run's details folded away."""
    meta, ds = d.meta, d.meta.get("dataset") or {}
    smoke = smoke_note(meta)
    items = [("description", esc(str(meta.get("description", ""))))]
    if smoke:
        items.append(("smoke test", f'<span class="smoke">{esc(smoke)}</span>'))
    items += [
        ("data set", esc(f"{ds.get('name', '?')} {ds.get('version', '')}".strip())),
        ("split rule", esc(str(ds.get("split_rule", "?")))),
        ("classes", esc(", ".join(d.classes)) or "?"),
        ("images", esc(", ".join(f"{k} {v}" for k, v in (ds.get("counts") or {}).items()))),
        ("space", esc(str(meta.get("space", "?")))),
        ("started", esc(str(meta.get("started", "?")))),
        ("status", esc(status_text(meta))),
    ]
    split = {"searched": {}, "fixed": {}, "internal": {}}
    if d.trials is not None:
        c = status_counts(d.trials)
        items.append(
            (
                "trials",
                esc(
                    f"{c['total']} in all: {c['finished']} finished, "
                    f"{c['stopped']} {stopped_early(d.settings.get('scheduler'))}, "
                    f"{c['errored']} errored, "
                    f"{c['diverged']} diverged, {c['running']} running"
                ),
            )
        )
        used = compute_used(d.trials, d.epochs)
        devices = ", ".join(f"{k} ×{v}" for k, v in used["devices"].items())
        items.append(
            (
                "compute used",
                esc(
                    f"{used['trial_hours']:.2f} trial-hours, {used['epochs']} epochs"
                    + (f" on {devices}" if devices else "")
                ),
            )
        )
        split = config_split(d.trials, d.hyperparameters)
        best = best_trial(d.trials, d.settings)
        if best is not None:
            searched = hp_values(best.to_frame().T, d.hyperparameters).iloc[0]
            items.append(
                (
                    "best trial",
                    esc(
                        f"{best['trial_id']} ({best['model']}, {best['status']}, "
                        f"max val acc {best['val_acc_max']:.3f})"
                    ),
                )
            )
            items.append(
                (
                    "its searched values",
                    esc(
                        ", ".join(f"{k}={label(v)}" for k, v in searched.items() if label(v) != "")
                    ),
                )
            )
            items.append(
                (
                    "its test accuracy",
                    ci_text(test_accuracy(best, d.predictions, d.classes)),
                )
            )
        else:
            items.append(("best trial", "none has reported a validation accuracy yet"))
    elif d.hyperparameters:
        split["searched"] = config_split(pd.DataFrame(), d.hyperparameters)["searched"]

    def pairs(values: dict[str, str]) -> str:
        return esc(", ".join(f"{k}={v}" for k, v in values.items())) or "none"

    items += [
        (
            "searched",
            esc("; ".join(f"{k}: {v}" for k, v in split["searched"].items()))
            or "nothing declared in study.json",
        ),
        ("fixed settings", pairs(split["fixed"])),
    ]
    extra = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(str(meta[k]))}</dd>"
        for k in ("seed", "git_commit", "command")
        if meta.get(k) is not None
    )
    versions = esc(", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()))
    return (
        dl(items) + f'<details><summary>run details</summary><dl class="summary">{extra}'
        f"<dt>internal keys</dt><dd>{pairs(split['internal'])}</dd>"
        f"<dt>versions</dt><dd>{versions}</dd></dl></details>"
    )


def status_text(meta: dict[str, Any]) -> str:
    """How the run ended, as study.json records it (records before `status` have `finished`)."""
    status = meta.get("status")
    if status is None:
        return (
            f"finished {meta['finished']}"
            if meta.get("finished")
            else "still running (or interrupted)"
        )
    reason = f" ({meta['status_reason']})" if meta.get("status_reason") else ""
    return f"{status} {meta.get('status_at', '')}{reason}".strip()


def running_banner(d: StudyData) -> str:
    """'running: k of N trials done' while the study runs, else nothing; an interrupted or failed
    study says so instead."""
    status = (d.meta or {}).get("status")
    if status in ("interrupted", "failed"):
        return (
            f'<div class="banner running" id="running">{esc(status_text(d.meta))}: the tables '
            "hold what finished; resume with python -m study.run --resume --name "
            f"{esc(str(d.meta.get('name', 'NAME')))}</div>"
        )
    if not d.meta or d.meta.get("finished") or status == "finished":
        return ""
    t = d.trials
    done = 0 if t is None else int((t["status"].astype(str) != "running").sum())
    total: Any = d.settings.get("num_samples") or "?"
    if d.meta.get("tuning_finished") or (isinstance(total, int) and done >= total):
        text = (
            f"running: {done} of {total} trials done; tuning finished, the best are being "
            "evaluated on the test split"
        )
    else:
        text = f"running: {done} of {total} trials done"
    return (
        f'<div class="banner running" id="running">{esc(text)} (this page is rewritten as '
        "trials finish; if it stops changing, the study was interrupted)</div>"
    )
