"""Ray Tune wiring: Optuna define-by-run sampler, ASHA, resources, storage, results callback."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from study import storage as st
from study.results import ResultsWriter, declared_columns
from study.search import StockSearch, StudyASHA, StudySearch
from study.spaces import SpaceSettings
from study.trainable import TrialData, train_trial

ASHA_STATE, OPTUNA_DB = "asha_rungs.parquet", "optuna.db"


def optuna_db(study_dir: str) -> Path:
    """Where Optuna's SQLite file is used: in the study directory when that is local; SQLite
    cannot live on an object store, so for s3:// or gs:// in this machine's cache (the same path
    for the same study every time: Ray's saved searcher reconnects to it on resume)."""
    if not st.is_remote(study_dir):
        return Path(study_dir) / OPTUNA_DB
    key = hashlib.sha256(study_dir.encode()).hexdigest()[:12]
    return st.cache_root() / "optuna" / f"{st.basename(study_dir)}-{key}" / OPTUNA_DB


def pull_optuna_db(study_dir: str) -> None:
    """Before a resume on remote storage: fetch the uploaded copy unless this machine's is newer
    (a driver that died before uploading leaves the only up-to-date copy here)."""
    local, remote = optuna_db(study_dir), st.join(study_dir, OPTUNA_DB)
    if not st.is_remote(study_dir) or not st.is_file(remote):
        return
    if not local.exists() or local.stat().st_mtime < (st.mtime(remote) or 0):
        st.download(remote, local)


def push_optuna_db(study_dir: str) -> None:
    """After a run on remote storage: a copy next to the results (optuna-dashboard, resumes)."""
    local = optuna_db(study_dir)
    if st.is_remote(study_dir) and local.exists():
        st.upload(local, st.join(study_dir, OPTUNA_DB))


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
    storage: str,
    name: str,
    seed: int,
    resources: dict[str, float],
    max_concurrent: int | None,
    grid: dict[str, list] | None = None,
    max_failures: int = 2,
) -> tune.Tuner:
    study_dir = st.join(storage, name)
    db = optuna_db(study_dir)
    db.parent.mkdir(parents=True, exist_ok=True)
    # "stock" exists only to measure what telling Optuna PRUNED buys (benchmarks/pruned_vs_stock.py)
    search_cls = StockSearch if settings.searcher == "stock" else StudySearch
    searcher = search_cls(
        space=space_fn,
        metric=settings.metric,
        mode=settings.mode,
        sampler=make_sampler(settings.sampler, seed, grid),
        points_to_evaluate=list(settings.starting_points) or None,
        constants=constants,
        study_seed=seed,
        # the Optuna study lives next to the results: optuna-dashboard sqlite:///<study>/optuna.db
        storage=optuna.storages.RDBStorage(f"sqlite:///{db}"),
        study_name=name,
    )
    search_alg = ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
    if settings.scheduler == "asha":
        scheduler = StudyASHA(
            time_attr="epoch",
            max_t=settings.max_epochs,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
            state_path=st.join(study_dir, ASHA_STATE),
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
            storage_path=storage,
            callbacks=[
                ResultsWriter(
                    study_dir,
                    dataset=dataset,
                    columns=declared_columns(space_fn, settings, constants),
                )
            ],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,  # our ResultsWriter prints one line per epoch instead
        ),
    )


def restore_tuner(
    *, storage: str, name: str, data: TrialData, resources: dict[str, float], **_: Any
) -> tune.Tuner:
    """Continue an interrupted study: finished trials stay, the others resume from checkpoints."""
    study_dir = st.join(storage, name)
    pull_optuna_db(study_dir)
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    return tune.Tuner.restore(
        study_dir, trainable=trainable, resume_unfinished=True, resume_errored=True
    )
