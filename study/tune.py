"""Ray Tune wiring: Optuna define-by-run sampler, ASHA, resources, storage, results callback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from study.results import ResultsWriter
from study.search import StudyASHA, StudySearch
from study.spaces import SpaceSettings
from study.trainable import TrialData, train_trial

ASHA_STATE, OPTUNA_DB = "asha_rungs.parquet", "optuna.db"


def make_sampler(
    name: str, seed: int, grid: dict[str, list] | None = None
) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "grid":
        if not grid:
            raise ValueError(
                "sampler 'grid' needs the space module to define GRID = {param: [values]}"
            )
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
        space=space_fn,
        metric=settings.metric,
        mode=settings.mode,
        sampler=make_sampler(settings.sampler, seed, grid),
        points_to_evaluate=list(settings.starting_points) or None,
        constants=constants,
        study_seed=seed,
        # the Optuna study lives next to the results: optuna-dashboard sqlite:///<study>/optuna.db
        storage=optuna.storages.RDBStorage(f"sqlite:///{storage / name / OPTUNA_DB}"),
        study_name=name,
    )
    search_alg = ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
    if settings.scheduler == "asha":
        scheduler = StudyASHA(
            time_attr="epoch",
            max_t=settings.max_epochs,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
            state_path=str(storage / name / ASHA_STATE),
        )
    else:
        scheduler = FIFOScheduler()
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=settings.num_samples,
            trial_dirname_creator=lambda t: t.trial_id,  # short names
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            callbacks=[ResultsWriter(storage / name, dataset=dataset)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,  # our ResultsWriter prints one line per epoch instead
        ),
    )


def restore_tuner(
    *, storage: Path, name: str, data: TrialData, resources: dict[str, float], **_: Any
) -> tune.Tuner:
    """Continue an interrupted study: finished trials stay, the others resume from checkpoints."""
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    return tune.Tuner.restore(
        str(storage / name), trainable=trainable, resume_unfinished=True, resume_errored=True
    )
