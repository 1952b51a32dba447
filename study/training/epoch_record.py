"""What a trial reports after each epoch, and which epoch is its best: one definition for both
trial loops (`study.training.trial.run_trial`, `study.training.cv_trial.run_trial_cv`), so that the
keys Ray receives cannot drift apart. The results tables read these keys (study.results.schema's
EPOCHS columns), and ASHA and Optuna read the config's metric among them.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from study.training.config import TrainConfig
from study.training.feed import BatchFit


@dataclass(frozen=True, kw_only=True)
class TrialStamp:
    """What every report of a trial repeats: the model's size, and where and with which seed the
    trial runs."""

    params: int
    gflops: float
    device: str
    node: str = ""  # default: this machine's host name
    seed: int
    pid: int = field(default_factory=os.getpid)

    def __post_init__(self) -> None:
        if not self.node:  # frozen: set through object's own __setattr__
            object.__setattr__(self, "node", os.uname().nodename)


@dataclass(kw_only=True)
class EpochRecord:
    """One epoch's report. The fields stand in the order the keys are reported; a field that is
    None is the other loop's and is left out of `metrics()`."""

    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_macro_f1: float
    # the cross-validation trial's: the spread of its folds' val_acc, and how many folds
    val_acc_sd: float | None = None
    cv_folds: int | None = None
    epoch_s: float
    images_per_s: float
    lr: float
    stamp: TrialStamp  # reported as its own keys, here
    micro_batch: int
    # run_trial's: whether its model runs compiled, and why
    compile: str | None = None
    compile_reason: str | None = None
    restore_note: str
    # why the trial ends after this epoch ("" when it goes on) and the best epoch so far;
    # a diverged or out-of-memory epoch comes with its reason, BestTracker.judge sets the rest
    end_reason: str = ""
    error: str = ""
    best_epoch: int = 0
    best_value: float = math.nan

    def metrics(self) -> dict[str, Any]:
        """The keys and values reported to Ray."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, TrialStamp):
                out |= asdict(value)
            elif value is not None:
                out[f.name] = value
        return out


@dataclass
class BestTracker:
    """The trial's best epoch so far by the config's metric and mode (0 and None: none yet).
    Checkpointed as `state()`, resumed with `resumed`."""

    value: float | None = None
    epoch: int = 0

    @classmethod
    def resumed(cls, state: dict[str, Any]) -> BestTracker:
        return cls(state["value"], state["epoch"])

    def state(self) -> dict[str, Any]:
        # a new dict each time: the checkpoint writer's thread saves it while the trial goes on
        return {"value": self.value, "epoch": self.epoch}

    def judge(self, record: EpochRecord, cfg: TrainConfig) -> bool:
        """Whether `record`'s epoch is the new best (one that ended the trial, diverged or out
        of memory, never is); completes `record` with why the trial ends after it and the best so
        far."""
        value = getattr(record, cfg.metric)
        sign = 1 if cfg.mode == "max" else -1
        better = not record.end_reason and (self.value is None or sign * value > sign * self.value)
        if better:
            self.value, self.epoch = value, record.epoch
        record.end_reason = record.end_reason or end_of(cfg, record.epoch - 1, self.epoch)
        record.best_epoch = self.epoch
        record.best_value = self.value if self.value is not None else math.nan
        return better


def end_of(cfg: TrainConfig, epoch: int, best_epoch: int) -> str:
    """Why a trial that trained the 0-based `epoch` normally ends there ("" when it goes on)."""
    if cfg.patience and epoch + 1 - best_epoch >= cfg.patience:
        return f"early stopping: no {cfg.metric} improvement for {cfg.patience} epochs"
    return "max_epochs" if epoch + 1 == cfg.max_epochs else ""


def restore_note(note: str, fit: BatchFit) -> str:
    """The report's restore_note: how the trial started (resumed, restarted, warm-started) and
    every halving of its micro-batch."""
    return "; ".join(filter(None, [note, *fit.notes]))
