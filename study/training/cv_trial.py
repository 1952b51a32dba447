"""A trial whose metric is the mean over K cross-validation folds (`SpaceSettings(cv_folds=K)`).

For tiny data sets, where one validation split of a few dozen images is noise: each trial trains
K models in lockstep, one per fold of train+val (`study.data.folds`, the split rule's units), and
reports after every epoch the fold means of the epoch's metrics, so ASHA's decision at each rung
and Optuna's value are the fold mean. It costs K times a plain trial.

Each epoch is trained, judged, checkpointed and reported as `study.training.trial.run_trial`
does (`train_or_end`, `EpochRecord`, `BestTracker`, `CheckpointWriter`): a diverged fold or an
out-of-memory error no micro-batch avoids ends the trial with a report, and the checkpoint is
written by the writer thread. The checkpoint holds every fold's model and optimiser (`cv.pt`) so
a retried trial resumes; its `best.pt` (what `evaluate_best` scores on test) is fold 0's model at
the best mean epoch: a model trained on (K-1)/K of train+val. For the study's final model use
`--refit`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from study.data.store import subset
from study.training import faults as inject
from study.training.checkpoints import (
    CheckpointWriter,
    Snapshot,
    read_weights,
    snapshot,
    unreadable,
    write_best,
)
from study.training.config import TrainConfig
from study.training.epoch_record import BestTracker, EpochRecord, restore_note
from study.training.steps import TrialData, pick_device, unwrap
from study.training.trial import Report, Resume, setup_trial, train_or_end, trial_stamp

CV_STATE = "cv.pt"


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


def write_cv(
    path: Path, epoch: int, best: dict[str, Any], best_fold0: dict | None, snaps: list[Snapshot]
) -> None:
    """cv.pt, on the writer's thread: every fold's snapshot (model and optimiser), the best so
    far and fold 0's weights at the best epoch (what `_restore` reads)."""
    for snap in snaps:
        snap.wait()
    folds = [(snap.model, snap.optimizer) for snap in snaps]
    state = {"epoch": epoch, "best": best, "best_fold0": best_fold0, "folds": folds}
    torch.save(state, path / CV_STATE)


def _restore(ckpt, runs, device) -> tuple[int, dict, dict | None, str]:
    try:
        with ckpt.as_directory() as d:
            state = read_weights(Path(d) / CV_STATE, device)
        for t, (model, opt) in zip(runs, state["folds"], strict=True):
            t.model.load_state_dict(model)
            t.opt.load_state_dict(opt)
    except Exception as e:  # unreadable or from another config: start over, and say so
        # no best weights yet (None: best.pt is the current fold 0 model until an epoch is best)
        note = f"restarted: checkpoint {ckpt.path} unreadable ({unreadable(e)})"
        return 0, {"value": None, "epoch": 0}, None, note
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
    """`study.training.trial.run_trial` for cv_folds > 0 (data.folds set), with the same
    arguments; it resumes from the newest checkpoint `checkpoint` returns (every fold's state is
    in one file)."""
    device = device or pick_device()
    faults = inject.parse(cfg.fault)
    # seeded once: each fold's model starts from where the RNG is after the previous one's
    runs = [setup_trial(cfg, fd, device, reseed=f == 0) for f, fd in enumerate(fold_data(data))]
    # one device and one batch size: the micro-batch that fits is found once, for every fold
    fit = runs[0].fit
    for t in runs[1:]:
        t.fit = fit
    folds = [t.data for t in runs]  # at the model's resize filter
    start, best, best_fold0, note = 0, BestTracker(), None, runs[0].note
    found = checkpoint()
    if found:
        start, best_dict, best_fold0, note = _restore(found[0], runs, device)
        best = BestTracker.resumed(best_dict)
    stamp = trial_stamp(runs[0], node)
    writer = CheckpointWriter()
    try:
        for epoch in range(start, cfg.max_epochs):
            t0 = time.perf_counter()
            per_fold, seen, end_reason, error = [], 0, "", ""
            for f, (fd, t) in enumerate(zip(folds, runs, strict=True)):
                # the data order depends only on (seed, epoch, fold): a resumed trial sees the same
                order = cfg.seed * 1_000 + epoch * 100 + f
                trained = train_or_end(t, fd, epoch, order, faults, prefix=f"fold {f}: ")
                if trained.end_reason:
                    end_reason, error = trained.end_reason, trained.error
                    break
                seen += trained.seen
                per_fold.append([trained.loss, trained.acc, *t.validate(fd)])
            # the fold means; all NaN once a fold ended the trial
            means = [math.nan] * 5 if end_reason else np.mean(per_fold, axis=0).tolist()
            elapsed = time.perf_counter() - t0
            record = EpochRecord(
                epoch=epoch + 1,
                train_loss=means[0],
                train_acc=means[1],
                val_loss=means[2],
                val_acc=means[3],
                val_macro_f1=means[4],
                val_acc_sd=float(np.std([r[3] for r in per_fold], ddof=1))
                if len(per_fold) > 1
                else math.nan,
                cv_folds=len(folds),
                epoch_s=elapsed,
                images_per_s=seen / max(elapsed, 1e-9),
                lr=runs[0].opt.param_groups[-1]["lr"],
                stamp=stamp,
                micro_batch=fit.micro,
                restore_note=restore_note(note, fit),
                end_reason=end_reason,
                error=error,
            )
            with writer.directory() as d:
                # host copies, queued now; written to disk by the writer's thread
                snaps = [snapshot(unwrap(t.model), t.opt) for t in runs]
                if best.judge(record, cfg):
                    best_fold0 = snaps[0].model  # already on the host: no second copy
                writer.submit(write_cv, d, epoch + 1, best.state(), best_fold0, snaps)
                best_state = snaps[0].model if best_fold0 is None else best_fold0
                writer.submit(write_best, d, snaps[0], best_state)
                writer.wait()  # the caller copies the directory in report(): it must be complete
                report(record.metrics(), d)
            if record.end_reason:
                return
    finally:
        writer.close()
