"""After tuning: confirmation runs, cross-validation, the refit final model, ensembles and TTA.

On a small data set one validation accuracy is noise, and the best of many trials' maxima over
epochs is biased upwards. So, once tuning is over (nothing here feeds back into it):
  --confirm-seeds N   the top_k trials' configs retrained N times with new seeds, each to the epoch
                      its trial chose, and scored on validation and test
  --confirm-folds K   the same configs trained on K folds of train+val (study.folds: the split
                      rule's stratified / by-group units), scored on each held-out fold and test
  --refit             the winner (best confirmed validation mean, else best tuning trial) trained
                      on train+val and scored on test: final_model/, what study.evaluate uses
  --ensemble K        the top K trials' best checkpoints, probabilities averaged
  --tta hflip         every score above also with the mirror image averaged in
Every training runs as a Ray task with a trial's resources; rows go to confirm.parquet
(layout: study.confirmed). The test split is scored, never used to choose anything.
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from study import confirmed
from study import storage as st
from study.results import EPOCHS, TRIALS, read_table, write_parquet


@dataclass(frozen=True)
class Plan:
    seeds: int = 0
    folds: int = 0
    refit: bool = False
    ensemble: int = 0
    tta: str = "none"

    @property
    def active(self) -> bool:
        return bool(self.seeds or self.folds or self.refit or self.ensemble or self.tta != "none")


@dataclass(frozen=True)
class Job:
    kind: str  # seed | fold | refit
    trial_id: str
    config: dict[str, Any]
    epochs: int
    fold: int = -1


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("small data: after tuning (study.confirm)")
    g.add_argument(
        "--confirm-seeds",
        type=int,
        default=0,
        metavar="N",
        help="retrain the top_k configs N times with new seeds; rank by their mean",
    )
    g.add_argument(
        "--confirm-folds",
        type=int,
        default=0,
        metavar="K",
        help="cross-validate the top_k configs on K folds of train+val",
    )
    g.add_argument(
        "--refit",
        action="store_true",
        help="train the winner on train+val: the study's final_model",
    )
    g.add_argument(
        "--ensemble",
        type=int,
        default=0,
        metavar="K",
        help="also score the top K trials' averaged probabilities",
    )
    g.add_argument(
        "--tta",
        default="none",
        choices=("none", "hflip"),
        help="test-time augmentation for every score after tuning",
    )
    g.add_argument(
        "--init-from",
        default=None,
        metavar="STUDY_DIR[:TRIAL_ID]",
        help="warm-start every trial from another study's best (or named, or "
        "':final') model; its architecture becomes the default config",
    )


def plan_of(a: argparse.Namespace) -> Plan:
    return Plan(a.confirm_seeds, a.confirm_folds, a.refit, a.ensemble, a.tta)


def prepare(a: argparse.Namespace, space, fn, ds, constants: dict[str, Any]) -> dict:
    """Check every small-data option before Ray starts; returns the constants with the warm-start
    source's architecture folded in (`--init-from`)."""
    plan = plan_of(a)
    for opt, v in (("--confirm-seeds", plan.seeds), ("--ensemble", plan.ensemble)):
        if v < 0:
            raise ValueError(f"{opt} {v}: expected an integer >= 0")
    if plan.ensemble == 1:
        raise ValueError("--ensemble 1: an ensemble needs at least 2 models (or leave it out)")
    if plan.folds:
        from study.folds import fold_ids

        fold_ids(pooled_meta(ds), ds.manifest["split_rule"], plan.folds, a.seed, "--confirm-folds")
    need = getattr(space.module, "NEEDS_INIT_FROM", None)
    if need and not a.init_from:
        raise ValueError(f"--space {space.name} needs --init-from STUDY_DIR[:TRIAL_ID] ({need})")
    if a.init_from:
        from study.transfer import inherited_config

        constants = {**constants, **inherited_config(a.init_from)}
    check_warm_start(fn, constants, ds.classes)
    return constants


def check_warm_start(fn, constants: dict[str, Any], classes: list[str]) -> None:
    """A sampled config with init_from (from --init-from or the space) builds and takes the
    source's weights: a mismatch fails now, not in every trial."""
    import optuna

    from study.config import TrainConfig
    from study.models import create_model
    from study.transfer import warm_start

    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    cfg = TrainConfig.from_config({**constants, **fn(trial), "seed": 0})
    if cfg.init_from:
        model = create_model(cfg.model, len(classes), **cfg.model_options)
        warm_start(model, cfg.init_from, classes)


def pooled_meta(ds) -> pd.DataFrame:
    """label, group, sha256 of train then val: the order of `load_split` for each."""
    cols = ["label", "group", "sha256"]
    return pd.concat([ds.table("train")[cols], ds.table("val")[cols]], ignore_index=True)


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


# ----------------------------------------------------------------------------- Ray tasks


def _scores(model, arr, device, tta: str, classes: list[str], prefix: str) -> dict[str, float]:
    from study.evaluate import probabilities, score

    if arr is None or not len(arr.labels):
        return {}
    probs = probabilities(model, arr, device)
    m = score(arr.labels, probs, classes)
    out = {f"{prefix}_acc": m["test_acc"], f"{prefix}_macro_f1": m["test_macro_f1"]}
    if prefix == "test":
        out |= {"test_acc_ci_low": m["test_acc_ci_low"], "test_acc_ci_high": m["test_acc_ci_high"]}
    if tta != "none":
        tprobs = probabilities(model, arr, device, tta)
        out[f"{prefix}_acc_tta"] = float((tprobs.argmax(1) == arr.labels).mean())
    return out


def train_job(
    data_dir: str, dataset: str, image_size: int, job: Job, folds: np.ndarray | None, tta: str
) -> dict[str, Any]:
    """One retraining (a Ray task): train, then score validation (or the held-out fold), then
    test. Refit rows carry the weights under `state`."""
    import torch

    from study.data import load_split, open_dataset
    from study.fit import concat, fit, subset
    from study.trainable import Diverged, pick_device

    t0 = time.perf_counter()
    ds = open_dataset(data_dir, dataset)
    train, val = load_split(ds, "train", image_size), load_split(ds, "val", image_size)
    if job.kind == "fold":
        assert folds is not None
        pool = concat(train, val)
        train, val = (
            subset(pool, np.flatnonzero(folds != job.fold)),
            subset(pool, np.flatnonzero(folds == job.fold)),
        )
    elif job.kind == "refit":
        train, val = concat(train, val), None
    row: dict[str, Any] = {
        "kind": job.kind,
        "trial_id": job.trial_id,
        "model": job.config.get("model", ""),
        "seed": job.config.get("seed", 0),
        "fold": job.fold,
        "epochs": job.epochs,
        "n_train": len(train.labels),
        "n_val": 0 if val is None else len(val.labels),
    }
    device = pick_device()
    try:
        fitted = fit(job.config, train, ds.classes, job.epochs, device)
    except Diverged as e:
        return row | {"error": f"diverged: {e}", "wall_s": time.perf_counter() - t0}
    row |= _scores(fitted.model, val, device, tta, ds.classes, "val")
    # training and every validation score are done: only now the test split is read
    row |= _scores(
        fitted.model, load_split(ds, "test", image_size), device, tta, ds.classes, "test"
    )
    if job.kind == "refit":
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in fitted.model.state_dict().items()}, buf)
        row["state"] = buf.getvalue()
    return row | {"wall_s": time.perf_counter() - t0, "error": ""}


def stored_models_job(
    study_dir: str,
    data_dir: str,
    dataset: str,
    image_size: int,
    trial_ids: list[str],
    ensemble: list[str],
    tta: str,
    epochs: dict[str, int],
) -> list[dict]:
    """The top trials' own best checkpoints (`tuning` rows) and their ensemble (a Ray task)."""
    from study.data import load_split, open_dataset
    from study.evaluate import load_best_model, probabilities
    from study.trainable import pick_device

    ds = open_dataset(data_dir, dataset)
    val, test = load_split(ds, "val", image_size), load_split(ds, "test", image_size)
    device = pick_device()
    rows, probs = [], {}
    for tid in dict.fromkeys([*trial_ids, *ensemble]):
        model, cfg = load_best_model(study_dir, tid, len(ds.classes), device)
        probs[tid] = {
            (split, mode): probabilities(model, arr, device, mode)
            for split, arr in (("val", val), ("test", test))
            for mode in dict.fromkeys(["none", tta])
        }
        if tid in trial_ids:
            rows.append(
                _prob_row(
                    "tuning", tid, cfg.model, cfg.seed, probs[tid], val, test, tta, ds.classes
                )
            )
    n_train = len(ds.table("train"))
    for row in rows:
        row |= {"epochs": epochs.get(row["trial_id"], -1), "n_train": n_train}
    if ensemble:
        mean = {
            key: np.mean([probs[t][key] for t in ensemble], axis=0) for key in probs[ensemble[0]]
        }
        rows.append(
            _prob_row(
                "ensemble", "+".join(ensemble), "ensemble", -1, mean, val, test, tta, ds.classes
            )
        )
    return rows


def _prob_row(kind, tid, model, seed, probs, val, test, tta, classes) -> dict[str, Any]:
    from study.evaluate import score

    v = score(val.labels, probs[("val", "none")], classes)
    t = score(test.labels, probs[("test", "none")], classes)
    row = {
        "kind": kind,
        "trial_id": tid,
        "model": model,
        "seed": seed,
        "fold": -1,
        "n_val": len(val.labels),
        "val_acc": v["test_acc"],
        "val_macro_f1": v["test_macro_f1"],
        "test_acc": t["test_acc"],
        "test_macro_f1": t["test_macro_f1"],
        "test_acc_ci_low": t["test_acc_ci_low"],
        "test_acc_ci_high": t["test_acc_ci_high"],
    }
    if tta != "none":
        for split, arr in (("val", val), ("test", test)):
            row[f"{split}_acc_tta"] = float((probs[(split, tta)].argmax(1) == arr.labels).mean())
    return row


# ----------------------------------------------------------------------------- the driver


def run(
    study_dir: str,
    data_dir: str,
    dataset: str,
    settings,
    resources: dict[str, float],
    plan: Plan,
    seed: int,
    split_rule: str,
) -> pd.DataFrame | None:
    """Everything `plan` asks for, after tuning and evaluate_best; writes confirm.parquet (and
    final_model/ for --refit) and prints the confirmed ranking. Ray must be running."""
    import ray

    from study.evaluate import trial_config, trials_with_checkpoints

    if not plan.active:
        return None
    trials, epochs = read_table(study_dir, TRIALS), read_table(study_dir, EPOCHS)
    rank_by = {"metric": settings.metric, "mode": settings.mode}
    try:
        k = max(settings.top_k, plan.ensemble)
        top, _ = trials_with_checkpoints(study_dir, trials, rank_by, k)
    except (ValueError, TypeError) as e:  # TypeError: no trials table at all
        print(f"confirmation skipped: {e}")
        return None
    top_k, members = top[: settings.top_k], top[: plan.ensemble] if plan.ensemble else []
    if plan.ensemble and len(members) < plan.ensemble:
        print(f"note: --ensemble {plan.ensemble}: only {len(members)} trials have checkpoints")
    opts = {"num_cpus": resources["cpu"], "num_gpus": resources["gpu"]}
    jobs, folds = [], None
    if plan.folds:
        from study.data import open_dataset
        from study.folds import fold_ids

        folds = fold_ids(pooled_meta(open_dataset(data_dir, dataset)), split_rule, plan.folds, seed)
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
    pending = [train_task.remote(data_dir, dataset, size, j, folds, plan.tta) for j in jobs]
    stored = stored_task.remote(
        study_dir, data_dir, dataset, size, top_k, members, plan.tta, chosen
    )
    rows = [*ray.get(stored), *ray.get(pending)]
    order = confirmed.ranking(confirmed.table(rows)) or top_k
    if plan.refit:
        rows.append(
            refit(
                study_dir,
                data_dir,
                dataset,
                settings,
                epochs,
                trials,
                order,
                order is not top_k,
                train_task,
                plan,
            )
        )
    df = confirmed.table(rows)
    write_parquet(df, st.join(study_dir, confirmed.CONFIRM))
    print_confirmed(df, study_dir)
    return df


def print_confirmed(df: pd.DataFrame, study_dir: str) -> None:
    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False}
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        shown = confirmed.display(df)
        if not shown.empty:
            print(f"\nconfirmed ranking (by the mean over repeats on validation) - {study_dir}")
            print(shown.to_string(index=False))
        print("\nsingle tuning models, refit and ensemble (test split; *_tta: with --tta)")
        print(confirmed.finals(df).to_string(**fmt))
    for _, r in df[df["error"] != ""].iterrows():
        print(f"note: {r['kind']} run of {r['trial_id']} (seed {r['seed']}): {r['error']}")


def refit(
    study_dir,
    data_dir,
    dataset,
    settings,
    epochs,
    trials,
    order: list[str],
    confirmed_rank: bool,
    train_task,
    plan: Plan,
) -> dict[str, Any]:
    """Train the winner on train+val to its chosen epoch; write final_model/ with its weights."""
    import ray

    from study.data import open_dataset
    from study.evaluate import trial_config
    from study.transfer import write_final_model

    winner = order[0]
    cfg = trial_config(study_dir, winner)
    n = chosen_epoch(epochs, trials, winner, settings.metric, settings.mode)
    job = Job("refit", winner, cfg, n)
    row = ray.get(train_task.remote(data_dir, dataset, settings.image_size, job, None, plan.tta))
    state = row.pop("state", None)
    if state is None:  # diverged: no final model, the row says why
        return row
    meta = {
        "trial_id": winner,
        "config": cfg,
        "epochs": n,
        "trained_on": "train+val",
        "classes": open_dataset(data_dir, dataset).classes,
        "chosen_by": "confirmed validation mean" if confirmed_rank else "tuning validation rank",
        "plan": asdict(plan),
    }
    where = write_final_model(study_dir, state, meta)
    print(f"final model: trial {winner}'s config, {n} epochs on train+val -> {where}")
    return row
