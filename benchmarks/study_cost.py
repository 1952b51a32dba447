"""What a FERG-scale study costs on one GPU, from measured epoch times (printed by gpu_check.py).

Pure functions, no Ray or Optuna (the GPU machine has neither): how many epochs an ASHA study
trains in all, and the GPU-hours that makes at a measured epoch time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from study.data.splits import DEFAULT_FRACTIONS, _cut

FERG_IMAGES = 55_767  # FERG-DB, 6 characters (shared/data/README.md)
FERG_CHARACTERS = 6


@dataclass(frozen=True)
class StudyPlan:
    """An ASHA study's size: search_spaces/googlenet_ferg.py's SETTINGS (a test keeps them equal)
    but for num_samples, which issue 19 asks about at 64."""

    num_samples: int = 64
    max_epochs: int = 30
    grace_period: int = 3
    reduction_factor: int = 3
    image_size: int = 112
    batch_sizes: tuple[int, ...] = (16, 32, 64)  # the space's choices (search_spaces/_axes.py)


GOOGLENET_FERG = StudyPlan()


def ferg_split_images() -> tuple[int, int]:
    """(train, val) images of FERG's by-character split: whole characters per split, so 4 of 6
    characters train and 1 validates (`study.data.splits`); the mean character size is used,
    the real split depends on which characters land where."""
    train, val, _ = _cut(FERG_CHARACTERS, DEFAULT_FRACTIONS)
    per = FERG_IMAGES / FERG_CHARACTERS
    return round(train * per), round(val * per)


def rungs(max_epochs: int, grace_period: int, reduction_factor: int) -> list[int]:
    """ASHA's milestones (Ray's one-bracket AsyncHyperBandScheduler), ascending."""
    n = int(math.log(max_epochs / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(n)]


def asha_trial_epochs(qualities: np.ndarray, plan: StudyPlan) -> np.ndarray:
    """Epochs each trial trains when trials reach the rungs in this order, one after another,
    a trial's rank being the same at every rung (`qualities`, higher is better).

    Ray's rule: a trial reaching a rung stops if it is below the (1 - 1/rf) quantile of the
    results recorded at that rung before it (none recorded: it continues), and is recorded."""
    recorded: dict[int, list[float]] = {
        m: [] for m in rungs(plan.max_epochs, plan.grace_period, plan.reduction_factor)
    }
    out = np.full(len(qualities), plan.max_epochs)
    for i, q in enumerate(qualities):
        for m, before in recorded.items():
            cutoff = (
                np.nanpercentile(before, (1 - 1 / plan.reduction_factor) * 100) if before else None
            )
            before.append(q)
            if cutoff is not None and q < cutoff:
                out[i] = min(m, plan.max_epochs)
                break
    return out


def asha_epochs(plan: StudyPlan, repeats: int = 200, seed: int = 0) -> float:
    """Expected epochs of the whole study: the mean over `repeats` random orders of trial
    quality. Early trials meet fewer records and continue more often than 1/rf, so this is more
    than the textbook n * sum(rung gaps / rf^k). Early stopping (the space's patience) and a
    sampler that improves over the study are not modelled: both shorten it."""
    rng = np.random.default_rng(seed)
    return float(
        np.mean(
            [asha_trial_epochs(rng.random(plan.num_samples), plan).sum() for _ in range(repeats)]
        )
    )


def study_gpu_hours(
    total_epochs: float, epoch_s: float, trials: int, first_epoch_extra_s: float = 0.0
) -> float:
    """Hours of one GPU running the trials one at a time: every epoch at `epoch_s` (training,
    validation, checkpoint and report), plus each trial's slower first epoch."""
    return (total_epochs * epoch_s + trials * first_epoch_extra_s) / 3600
