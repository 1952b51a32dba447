"""The Ray tasks of `study.evaluation.confirm`: one retraining (seed, fold, refit) and the scoring
of the top trials' stored checkpoints and their ensemble. Each reads the prepared data itself (the
node's decoded cache); the test split only after training and every validation score."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from study.heavy_imports import gc_paused

# A Ray task's new worker imports this module first: torch comes in with the garbage collector
# paused (study.heavy_imports says why)
with gc_paused():
    import torch

    from study.data import load_split
    from study.data.store import PreparedDataset, concat, subset
    from study.evaluation.inference import load_best_model, probabilities, score
    from study.models import input_interpolation
    from study.training.fit import fit
    from study.training.steps import Diverged, pick_device


@dataclass(frozen=True)
class Job:
    kind: str  # seed | fold | refit
    trial_id: str
    config: dict[str, Any]
    epochs: int
    fold: int = -1

    def row(self) -> dict[str, Any]:
        """What identifies this run in confirm.parquet (its result or its error joins it)."""
        return {
            "kind": self.kind,
            "trial_id": self.trial_id,
            "model": self.config.get("model", ""),
            "seed": self.config.get("seed", 0),
            "fold": self.fold,
            "epochs": self.epochs,
        }


def _scores(model, arr, device, tta: str, classes: list[str], prefix: str) -> dict[str, float]:

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
    ds: PreparedDataset, image_size: int, job: Job, folds: np.ndarray | None, tta: str
) -> dict[str, Any]:
    """One retraining (a Ray task): train, then score validation (or the held-out fold), then
    test. Refit rows carry the weights under `state`."""
    t0 = time.perf_counter()
    resize = input_interpolation(job.config["model"])  # the filter the model's weights expect
    train, val = (
        load_split(ds, "train", image_size, resize),
        load_split(ds, "val", image_size, resize),
    )
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
        **job.row(),
        "n_train": len(train.labels),
        "n_val": 0 if val is None else len(val.labels),
    }
    device = pick_device()
    try:
        fitted = fit(job.config, train, ds.classes, job.epochs, device, resize)
    except Diverged as e:
        return row | {"error": f"diverged: {e}", "wall_s": time.perf_counter() - t0}
    row |= _scores(fitted.model, val, device, tta, ds.classes, "val")
    # training and every validation score are done: only now the test split is read
    test = load_split(ds, "test", image_size, resize)
    row |= _scores(fitted.model, test, device, tta, ds.classes, "test")
    if job.kind == "refit":
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in fitted.model.state_dict().items()}, buf)
        row["state"] = buf.getvalue()
    return row | {"wall_s": time.perf_counter() - t0, "error": ""}


def stored_models_job(
    study_dir: str,
    ds: PreparedDataset,
    image_size: int,
    trial_ids: list[str],
    ensemble: list[str],
    tta: str,
    epochs: dict[str, int],
    score_val: bool = True,
) -> list[dict]:
    """The top trials' own best checkpoints (`tuning` rows) and their ensemble (a Ray task).
    `score_val=False` for cv_folds studies: their checkpoints trained on part of val."""
    names = ["val", "test"] if score_val else ["test"]
    by_filter: dict[str, dict] = {}  # the splits once per resize filter the models expect
    device = pick_device()
    rows, probs = [], {}
    for tid in dict.fromkeys([*trial_ids, *ensemble]):
        model, cfg = load_best_model(study_dir, tid, len(ds.classes), device)
        resize = input_interpolation(model)
        if resize not in by_filter:
            by_filter[resize] = {s: load_split(ds, s, image_size, resize) for s in names}
        splits = by_filter[resize]
        probs[tid] = {
            (split, mode): probabilities(model, arr, device, mode)
            for split, arr in splits.items()
            for mode in dict.fromkeys(["none", tta])
        }
        if tid in trial_ids:
            rows.append(
                _prob_row("tuning", tid, cfg.model, cfg.seed, probs[tid], splits, tta, ds.classes)
            )
    n_train = len(ds.table("train"))
    for row in rows:
        row |= {"epochs": epochs.get(row["trial_id"], -1), "n_train": n_train}
    if ensemble:
        keys = probs[ensemble[0]]
        mean = {key: np.mean([probs[t][key] for t in ensemble], axis=0) for key in keys}
        name = "+".join(ensemble)
        # `splits`: any filter's, for the labels and counts (the same images in the same order)
        rows.append(_prob_row("ensemble", name, "ensemble", -1, mean, splits, tta, ds.classes))
    return rows


def _prob_row(kind, tid, model, seed, probs, splits, tta, classes) -> dict[str, Any]:

    row = {"kind": kind, "trial_id": tid, "model": model, "seed": seed, "fold": -1, "n_val": 0}
    for split, arr in splits.items():
        m = score(arr.labels, probs[(split, "none")], classes)
        row |= {f"{split}_acc": m["test_acc"], f"{split}_macro_f1": m["test_macro_f1"]}
        if split == "test":
            row |= {k: m[k] for k in ("test_acc_ci_low", "test_acc_ci_high")}
        else:
            row["n_val"] = len(arr.labels)
        if tta != "none":
            row[f"{split}_acc_tta"] = float((probs[(split, tta)].argmax(1) == arr.labels).mean())
    return row
