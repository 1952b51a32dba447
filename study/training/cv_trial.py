"""A trial whose metric is the mean over K cross-validation folds (`SpaceSettings(cv_folds=K)`).

For tiny data sets, where one validation split of a few dozen images is noise: each trial trains
K models in lockstep, one per fold of train+val (`study.data.folds`, the split rule's units), and
reports after every epoch the fold means of the epoch's metrics, so ASHA's decision at each rung
and Optuna's value are the fold mean. It costs K times a plain trial.

The checkpoint holds every fold's model and optimiser (`cv.pt`) so a retried trial resumes; its
`best.pt` (what `evaluate_best` scores on test) is fold 0's model at the best mean epoch: a model
trained on (K-1)/K of train+val. For the study's final model use `--refit`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from study.data.store import subset
from study.training.checkpoints import BEST, to_host
from study.training.config import TrainConfig
from study.training.steps import Diverged, TrialData, pick_device
from study.training.trial import Report, Resume, end_of, setup_trial

CV_STATE = "cv.pt"


MEAN_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1")


def fold_data(data: TrialData) -> list[TrialData]:
    """One TrialData per fold: train on the other folds, validate on this one (and the same
    fold of each copy `data.resized` holds, for models that expect another resize filter)."""
    assert data.folds is not None
    resized = {f: fold_data(copy) for f, copy in data.resized.items()}
    return [
        TrialData(
            train=subset(data.train, np.flatnonzero(data.folds != f)),
            val=subset(data.train, np.flatnonzero(data.folds == f)),
            classes=data.classes,
            interpolation=data.interpolation,
            resized={name: folds[f] for name, folds in resized.items()},
        )
        for f in range(int(data.folds.max()) + 1)
    ]


def _restore(ckpt, runs, device) -> tuple[int, dict, list, str]:
    try:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / CV_STATE, map_location=device, weights_only=True)
        for t, (model, opt) in zip(runs, state["folds"], strict=True):
            t.model.load_state_dict(model)
            t.opt.load_state_dict(opt)
    except Exception as e:  # unreadable or from another config: start over, and say so
        return 0, {"value": None, "epoch": 0}, [], f"restarted: checkpoint unreadable ({e})"
    note = f"resumed from checkpoint {ckpt.path} (epoch {state['epoch']})"
    return state["epoch"], state["best"], state["best_fold0"], note


def run_trial_cv(
    cfg: TrainConfig,
    data: TrialData,
    report: Report,
    checkpoint: Resume,
    *,
    device: torch.device | None = None,
    node: str = "",
) -> None:
    """`study.training.trial.run_trial` for cv_folds > 0 (data.folds set), with the same arguments;
    it
    resumes from the newest checkpoint `checkpoint` returns (every fold's state is in one file)."""
    device = device or pick_device()
    # seeded once: each fold's model starts from where the RNG is after the previous one's
    runs = [setup_trial(cfg, fd, device, reseed=f == 0) for f, fd in enumerate(fold_data(data))]
    folds = [t.data for t in runs]  # at the model's resize filter
    start, best, best_fold0, note = 0, {"value": None, "epoch": 0}, None, runs[0].note
    found = checkpoint()
    if found:
        start, best, best_fold0, note = _restore(found[0], runs, device)
    sign = 1 if cfg.mode == "max" else -1
    for epoch in range(start, cfg.max_epochs):
        t0 = time.perf_counter()
        per_fold, seen, end_reason, error = [], 0, "", ""
        for f, (fd, t) in enumerate(zip(folds, runs, strict=True)):
            # the data order depends only on (seed, epoch, fold): a resumed trial sees the same
            try:
                loss, acc, n = t.train(fd, epoch, cfg.seed * 1_000 + epoch * 100 + f)
            except Diverged as e:
                end_reason, error = "diverged", f"fold {f}: {e}"
                break
            seen += n
            per_fold.append([loss, acc, *t.validate(fd)])
        means = (
            dict(zip(MEAN_KEYS, np.mean(per_fold, axis=0).tolist(), strict=True))
            if not end_reason
            else dict.fromkeys(MEAN_KEYS, math.nan)
        )
        elapsed = time.perf_counter() - t0
        metrics = {
            "epoch": epoch + 1,
            **means,
            "val_acc_sd": float(np.std([r[3] for r in per_fold], ddof=1))
            if len(per_fold) > 1
            else math.nan,
            "cv_folds": len(folds),
            "epoch_s": elapsed,
            "images_per_s": seen / max(elapsed, 1e-9),
            "lr": runs[0].opt.param_groups[-1]["lr"],
            "params": runs[0].params,
            "device": str(device),
            "node": node or os.uname().nodename,
            "seed": cfg.seed,
            "pid": os.getpid(),
            "micro_batch": min(t.fit.micro for t in runs),
            "restore_note": note,
        }
        value = metrics[cfg.metric]
        if not end_reason and (best["value"] is None or sign * value > sign * best["value"]):
            best = {"value": value, "epoch": epoch + 1}
            best_fold0 = to_host(runs[0].model.state_dict())
        end_reason = end_reason or end_of(cfg, epoch, best["epoch"])
        metrics |= {
            "end_reason": end_reason,
            "error": error,
            "best_epoch": best["epoch"],
            "best_value": best["value"] if best["value"] is not None else math.nan,
        }
        if device.type == "cuda":  # to_host's copies are non-blocking: let them land
            torch.cuda.synchronize(device)
        with tempfile.TemporaryDirectory() as d:
            state = {
                "epoch": epoch + 1,
                "best": best,
                "best_fold0": best_fold0,
                "folds": [
                    (to_host(t.model.state_dict()), to_host(t.opt.state_dict())) for t in runs
                ],
            }
            torch.save(state, Path(d) / CV_STATE)
            best_state = best_fold0 if best_fold0 is not None else state["folds"][0][0]
            torch.save(best_state, Path(d) / BEST)
            report(metrics, Path(d))
        if end_reason:
            return
