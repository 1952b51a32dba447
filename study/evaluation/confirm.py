"""After tuning: confirmation runs, cross-validation, the refit final model, ensembles and TTA.

On a small data set one validation accuracy is noise, and the best of many trials' maxima over
epochs is biased upwards. So, once tuning is over (nothing here feeds back into it):
  --confirm-seeds N   the top_k trials' configs retrained N times with new seeds, each to the epoch
                      its trial chose, and scored on validation and test
  --confirm-folds K   the same configs trained on K folds of train+val (study.data.folds: the split
                      rule's stratified / by-group units), scored on each held-out fold and test
  --refit             the winner (best confirmed validation mean, else best tuning trial) trained
                      on train+val and scored on test: final_model/, what study.evaluate uses
  --ensemble K        the top K trials' best checkpoints, probabilities averaged
  --tta hflip         every score above also with the mirror image averaged in
Every training runs as a Ray task with a trial's resources; rows go to confirm.parquet
(layout and writer: study.results.confirmed). The test split is scored, never used to choose
anything.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import optuna
import pandas as pd
import ray

from study.data.folds import fold_ids
from study.data.store import PreparedDataset
from study.evaluation.confirm_jobs import Job, stored_models_job, train_job
from study.evaluation.confirm_options import Plan
from study.models import create_model
from study.results import confirmed
from study.results.lookups import trial_config, trials_with_checkpoints
from study.results.schema import EPOCHS, TRIALS
from study.results.tables import read_table
from study.spaces.loader import quiet_optuna
from study.training.config import TrainConfig
from study.training.transfer import inherited_config, warm_start, write_final_model
from study.tuning.trial_data import pooled_meta


def prepare(
    plan: Plan, init_from: str | None, seed: int, space, settings, fn, ds, constants: dict[str, Any]
) -> dict:
    """Check every small-data option before Ray starts; returns the constants with the warm-start
    source's architecture folded in (`--init-from`). Call check_warm_start once the space's own
    pre-flight (study.run.preflight.check_space_builds) has passed."""
    for opt, v in (("--confirm-seeds", plan.seeds), ("--ensemble", plan.ensemble)):
        if v < 0:
            raise ValueError(f"{opt} {v}: expected an integer >= 0")
    if plan.ensemble == 1:
        raise ValueError("--ensemble 1: an ensemble needs at least 2 models (or leave it out)")

    for k, what in ((plan.folds, "--confirm-folds"), (settings.cv_folds, "SpaceSettings.cv_folds")):
        if k:
            fold_ids(pooled_meta(ds), ds.manifest["split_rule"], k, seed, what)
    need = getattr(space.module, "NEEDS_INIT_FROM", None)
    if need and not init_from:
        raise ValueError(f"--space {space.name} needs --init-from STUDY_DIR[:TRIAL_ID] ({need})")
    if init_from:
        constants = {**constants, **inherited_config(init_from)}
    return constants


def check_warm_start(fn, constants: dict[str, Any], classes: list[str]) -> None:
    """A sampled config with init_from (from --init-from or the space) builds and takes the
    source's weights: a mismatch fails now, not in every trial."""
    with quiet_optuna():
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    cfg = TrainConfig.from_config({**constants, **fn(trial), "seed": 0})
    if cfg.init_from:
        model = create_model(cfg.model, len(classes), **cfg.model_options)
        warm_start(model, cfg.init_from, classes)


def new_seed(trial_seed: int, i: int) -> int:
    """The i-th confirmation seed of a trial: deterministic, and not the trial's own."""
    seed = int(np.random.SeedSequence([trial_seed, i + 1]).generate_state(1)[0] % 2**31)
    return seed if seed != trial_seed else seed + 1


def chosen_epoch(
    epochs: pd.DataFrame | None, trials: pd.DataFrame, tid: str, metric: str, mode: str
) -> int:
    """The epoch whose weights the trial kept (best by the study metric): the epoch count its
    retraining goes to."""
    col = metric if epochs is not None and metric in epochs.columns else "val_acc"
    e = epochs[epochs["trial_id"] == tid] if epochs is not None else pd.DataFrame()
    e = e[np.isfinite(e[col].astype(float))] if len(e) else e
    if len(e):
        best = e[col].idxmax() if mode == "max" else e[col].idxmin()
        return int(e.loc[best, "epoch"])
    row = trials[trials["trial_id"] == tid]
    return max(1, int(row["best_epoch"].iloc[0])) if len(row) else 1


# ----------------------------------------------------------------------------- the driver


def run(
    study_dir: str,
    ds: PreparedDataset,
    settings,
    resources: dict[str, float],
    plan: Plan,
    seed: int,
) -> pd.DataFrame | None:
    """Everything `plan` asks for, after tuning and evaluate_best; writes confirm.parquet (and
    final_model/ for --refit) and prints the confirmed ranking. Ray must be running."""
    if not plan.active:
        return None
    ds.check_unchanged()  # every job reads the splits the study was selected on, or none runs
    trials, epochs = read_table(study_dir, TRIALS), read_table(study_dir, EPOCHS)
    rank_by = {"metric": settings.metric, "mode": settings.mode}
    try:
        if trials is None:
            raise ValueError(f"{study_dir}: no trial reported a result")
        k = max(settings.top_k, plan.ensemble)
        top, _ = trials_with_checkpoints(study_dir, trials, rank_by, k)
    except ValueError as e:
        print(f"confirmation skipped: {e}")
        return None
    top_k, members = top[: settings.top_k], top[: plan.ensemble] if plan.ensemble else []
    if plan.ensemble and len(members) < plan.ensemble:
        print(f"note: --ensemble {plan.ensemble}: only {len(members)} trials have checkpoints")
    opts = {"num_cpus": resources["cpu"], "num_gpus": resources["gpu"]}
    jobs, folds = [], None
    if plan.folds:
        rule = ds.manifest["split_rule"]
        folds = fold_ids(pooled_meta(ds), rule, plan.folds, seed)
    chosen = {t: chosen_epoch(epochs, trials, t, settings.metric, settings.mode) for t in top}
    for tid in top_k:
        cfg = trial_config(study_dir, tid)
        n = chosen[tid]
        jobs += [
            Job("seed", tid, {**cfg, "seed": new_seed(int(cfg.get("seed", 0)), i)}, n)
            for i in range(plan.seeds)
        ]
        jobs += [Job("fold", tid, cfg, n, f) for f in range(plan.folds)]
    train_task = ray.remote(train_job).options(**opts)
    stored_task = ray.remote(stored_models_job).options(**opts)
    size = settings.image_size
    pending = [train_task.remote(ds, size, j, folds, plan.tta) for j in jobs]
    stored = stored_task.remote(
        study_dir, ds, size, top_k, members, plan.tta, chosen, not settings.cv_folds
    )
    try:
        rows = ray.get(stored)
    except ray.exceptions.RayError as e:  # the retraining rows are still worth keeping
        print(f"note: scoring the top trials' checkpoints failed: {error_line(e)}")
        rows = []
    rows += gather(pending, jobs)
    if settings.cv_folds:  # what tuning chose on: the trial's fold mean at its chosen epoch
        for row in rows:
            if row["kind"] == "tuning":
                e = epochs[(epochs["trial_id"] == row["trial_id"])]
                row["val_acc"] = float(e.loc[e["epoch"] == row["epochs"], "val_acc"].iloc[0])
    order = confirmed.ranking(confirmed.table(rows)) or top_k
    if plan.refit:
        ranked_by = "confirmed validation mean" if order is not top_k else "tuning validation rank"
        where = (study_dir, ds)
        rows.append(refit(where, settings, epochs, trials, order[0], ranked_by, train_task, plan))
    confirmed.write(study_dir, rows, confirmed.RETRAINED)  # a probe's rows stay
    return confirmed.table(rows)  # printed after the leaderboard: the final table, by the mean


def error_line(e: Exception) -> str:
    """The last line of a task's error (the reason, not Ray's traceback)."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else type(e).__name__


def gather(refs: list, jobs: list[Job]) -> list[dict[str, Any]]:
    """The rows of finished retraining tasks; a task that raised becomes a row with its error,
    so one failed run (a lost node, an out-of-memory) never loses the others."""
    rows = []
    for ref, job in zip(refs, jobs, strict=True):
        try:
            rows.append(ray.get(ref))
        except ray.exceptions.RayError as e:
            rows.append({**job.row(), "error": error_line(e)})
    return rows


def refit(
    where: tuple[str, PreparedDataset],
    settings,
    epochs,
    trials,
    winner: str,
    chosen_by: str,
    train_task,
    plan: Plan,
) -> dict[str, Any]:
    """Train the winner on train+val to its chosen epoch; write final_model/ with its weights."""
    study_dir, ds = where
    cfg = trial_config(study_dir, winner)
    n = chosen_epoch(epochs, trials, winner, settings.metric, settings.mode)
    job = Job("refit", winner, cfg, n)
    ref = train_task.remote(ds, settings.image_size, job, None, plan.tta)
    row = gather([ref], [job])[0]
    state = row.pop("state", None)
    if state is None:  # diverged or failed: no final model, the row says why
        return row
    meta = {
        "trial_id": winner,
        "config": cfg,
        "epochs": n,
        "trained_on": "train+val",
        "classes": ds.classes,
        "chosen_by": chosen_by,
        "plan": asdict(plan),
    }
    out = write_final_model(study_dir, state, meta)
    print(f"final model: trial {winner}'s config, {n} epochs on train+val -> {out}")
    return row
