"""Ray Tune wiring: Optuna sampler, the scheduler (make_scheduler), resources, storage, results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna
from ray import tune
from ray._common.usage import usage_lib
from ray.air._internal import usage as air_usage
from ray.tune.search import ConcurrencyLimiter

from study import storage as st
from study.results.schema import ASHA_RUNGS
from study.results.trials import declared_columns
from study.spaces.settings import SpaceSettings
from study.training.steps import TrialData
from study.tuning.callbacks import ConsoleCallback, ResultsWriter
from study.tuning.live_report import live_report_callbacks
from study.tuning.optuna_storage import (
    open_optuna_storage,
    optuna_db,
    optuna_storage_url,
    pull_optuna_db,
)
from study.tuning.ray_state import WholeSavesSearchGenerator
from study.tuning.schedulers import (
    Population,
    check_resumable,
    make_scheduler,
    pbt_population,
)
from study.tuning.searcher import StockSearch, StudySearch, make_sampler
from study.tuning.trainable import train_trial

ASHA_STATE = ASHA_RUNGS


def _no_callback_census(callbacks: Sequence[tune.Callback] | None) -> bool:
    return False


_RAY_CALLBACK_CENSUS = air_usage.tag_callbacks


def skip_callback_census_without_usage_stats() -> None:
    """Tuner.fit counts the run's callbacks for Ray's usage statistics by importing its MLflow,
    W&B, Comet and Aim integrations (mlflow alone: about 1 s of every study's driver), even when
    usage statistics are off (RAY_USAGE_STATS_ENABLED=0) and the count is thrown away. Then skip
    the count; with statistics on, Ray's own count (again, for a process that builds studies with
    both settings)."""
    stats_on = usage_lib.usage_stats_enabled()
    # Tune's run() looks it up at each call
    air_usage.tag_callbacks = _RAY_CALLBACK_CENSUS if stats_on else _no_callback_census


def make_searcher(
    space_fn: Callable[[optuna.Trial], dict],
    settings: SpaceSettings,
    constants: dict[str, Any],
    seed: int,
    grid: dict[str, list] | None,
    optuna_storage: str | None,
    name: str,
    study_dir: str,
) -> StudySearch:
    # "stock" exists only to measure what telling Optuna PRUNED buys (benchmarks/pruned_vs_stock.py)
    search_cls = StockSearch if settings.searcher == "stock" else StudySearch
    return search_cls(
        space=space_fn,
        metric=settings.metric,
        mode=settings.mode,
        sampler=make_sampler(settings.sampler, seed, grid),
        points_to_evaluate=list(settings.starting_points) or None,
        constants=constants,
        study_seed=seed,
        # by default the Optuna study lives next to the results (optuna-dashboard
        # sqlite:///<study>/optuna.db); --optuna-storage puts it where a dashboard can watch it
        storage=open_optuna_storage(optuna_storage_url(optuna_storage, study_dir)),
        study_name=name,
    )


def build_tuner(
    *,
    space_fn: Callable[[optuna.Trial], dict],
    settings: SpaceSettings,
    constants: dict[str, Any],
    data: TrialData,
    dataset: str,
    storage: str,
    name: str,
    seed: int,
    resources: dict[str, float],
    max_concurrent: int | None,
    grid: dict[str, list] | None = None,
    max_failures: int = 2,
    optuna_storage: str | None = None,
    reports: str | None = None,  # where the report is written: rewritten live as trials finish
    verbose: int = 0,  # 1: Ray Tune's own progress table besides ours (`study run -v`)
    callbacks: Sequence[tune.Callback] = (),  # experiment trackers (study.tuning.trackers)
) -> tune.Tuner:
    study_dir = st.join(storage, name)
    skip_callback_census_without_usage_stats()
    if optuna_storage is None:
        optuna_db(study_dir).parent.mkdir(parents=True, exist_ok=True)
    if settings.scheduler == "pbt":  # Ray refuses a searcher with PBT: no Optuna study
        search_alg = Population(
            pbt_population(space_fn, settings, constants, seed, grid),
            study_dir,
            max_concurrent or 0,
        )
    else:
        searcher = make_searcher(
            space_fn, settings, constants, seed, grid, optuna_storage, name, study_dir
        )
        limited = ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
        search_alg = WholeSavesSearchGenerator(limited, study_dir)  # (Tune's wrapper, zipping)
    scheduler = make_scheduler(settings, st.join(study_dir, ASHA_STATE), seed)
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            # metric and mode: the searcher's and the scheduler's own (Ray refuses them twice)
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=settings.num_samples,
            trial_dirname_creator=lambda t: t.trial_id,  # short names
            reuse_actors=True,  # one worker runs trial after trial: torch imported once
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            storage_filesystem=st.ray_filesystem(storage),  # files that appear whole
            callbacks=[
                ResultsWriter(
                    study_dir,
                    dataset=dataset,
                    columns=declared_columns(space_fn, settings, constants),
                ),
                # trial start, epoch and end lines and status lines (study.console)
                ConsoleCallback(settings.num_samples, settings.metric, settings.mode),
                *live_report_callbacks(study_dir, reports),  # after the writer has flushed
                *callbacks,
            ],
            # PBT restarts a trial from another's checkpoint of some epochs ago: keep them all
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=None if settings.scheduler == "pbt" else 2
            ),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=verbose,
        ),
    )


def restore_tuner(
    *, storage: str, name: str, data: TrialData, resources: dict[str, float], **kwargs: Any
) -> tune.Tuner:
    """Continue an interrupted study: finished trials stay, the others resume from checkpoints.

    A study whose first run ended after writing study.json but before its tuner existed (no
    tuner.pkl: nothing ran) starts now, from the beginning, with the recorded settings. The
    driver's preflight has checked, before Ray started, that the state files parse and has put
    back Ray's last whole save (study.tuning.ray_state), or that no trial ran."""
    study_dir = st.join(storage, name)
    check_resumable(kwargs["settings"].scheduler, study_dir)
    if not tune.Tuner.can_restore(study_dir):
        return build_tuner(storage=storage, name=name, data=data, resources=resources, **kwargs)
    pull_optuna_db(study_dir)
    # what Ray pickled holds the paths of the folder it ran in; these are built for this one
    # (without starting points: a new searcher would enqueue them in the Optuna study again)
    settings = kwargs.pop("settings").override(starting_points=())
    here = build_tuner(
        storage=storage, name=name, data=data, resources=resources, settings=settings, **kwargs
    )
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    tuner = tune.Tuner.restore(
        study_dir,
        trainable=trainable,
        resume_unfinished=True,
        resume_errored=True,
        storage_filesystem=st.ray_filesystem(study_dir),
    )
    restored, fresh = tuner._local_tuner, here._local_tuner
    if restored is not None and fresh is not None:  # None only through the Ray client
        restored._tune_config.search_alg = fresh._tune_config.search_alg
        restored._tune_config.scheduler = fresh._tune_config.scheduler
        restored._run_config.callbacks = fresh._run_config.callbacks
    return tuner
