"""Ray Tune wiring: Optuna's define-by-run sampler, ASHA, resources, storage, our results callback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from study.results import ResultsWriter
from study.spaces import SpaceSettings
from study.trainable import TrialData, train_trial


class StudySearch(OptunaSearch):
    """OptunaSearch whose config is exactly what the space returns, plus a per-trial seed.

    The stock class merges every raw `suggest_*` value into the config; our spaces return the
    complete config themselves (derived values such as `head_dense=[64, 64]` included), so the raw
    values would only be unknown keys for the trainable. They travel under `suggested` instead,
    recorded (trials.parquet's config columns) but never read by training.
    """

    def __init__(self, *args: Any, constants: dict[str, Any], study_seed: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._constants = constants
        self._study_seed = study_seed

    def _suggest_from_define_by_run_func(self, func, ot_trial) -> dict:
        config = func(ot_trial)
        if not isinstance(config, dict):
            raise TypeError(f"space(trial) must return a dict, got {type(config).__name__}")
        # seed from the study seed and Optuna's trial number: reproducible across runs and resumes
        return {**self._constants, **config, "seed": self._study_seed * 10_000 + ot_trial.number,
                "suggested": dict(ot_trial.params)}


def make_sampler(name: str, seed: int, grid: dict[str, list] | None = None
                 ) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "grid":
        if not grid:
            raise ValueError("sampler 'grid' needs the space module to define GRID = {param: [values]}")
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def build_tuner(
    *,
    space_fn: Callable[[optuna.Trial], dict],
    settings: SpaceSettings,
    constants: dict[str, Any],
    data: TrialData,
    dataset: str,
    storage: Path,
    name: str,
    seed: int,
    resources: dict[str, float],
    max_concurrent: int | None,
    grid: dict[str, list] | None = None,
    max_failures: int = 2,
) -> tune.Tuner:
    searcher = StudySearch(
        space=space_fn, metric=settings.metric, mode=settings.mode,
        sampler=make_sampler(settings.sampler, seed, grid),
        points_to_evaluate=list(settings.starting_points) or None,
        constants=constants, study_seed=seed,
    )
    search_alg = ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
    if settings.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration", max_t=settings.max_epochs,
            grace_period=settings.grace_period, reduction_factor=settings.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=settings.metric, mode=settings.mode, search_alg=search_alg,
            scheduler=scheduler, num_samples=settings.num_samples,
            trial_dirname_creator=lambda t: t.trial_id,  # short names
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage),
            callbacks=[ResultsWriter(storage / name, dataset=dataset)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,  # our ResultsWriter prints one line per epoch instead
        ),
    )


def restore_tuner(*, storage: Path, name: str, data: TrialData, resources: dict[str, float],
                  **_: Any) -> tune.Tuner:
    """Continue an interrupted study: finished trials stay, unfinished ones resume from checkpoints."""
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    return tune.Tuner.restore(str(storage / name), trainable=trainable, resume_unfinished=True,
                              resume_errored=True)
