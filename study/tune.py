"""Ray Tune wiring: Optuna sampler, the scheduler (make_scheduler), resources, storage, results."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
from ray import tune
from ray.tune.schedulers import (
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import ConcurrencyLimiter

from study import storage as st
from study.live_report import live_report_callbacks
from study.results import ConsoleCallback, ResultsWriter, declared_columns
from study.schema import ASHA_RUNGS
from study.search import (
    PerturbKnobs,
    Population,
    StockSearch,
    StudyASHA,
    StudySearch,
    trial_config,
)
from study.settings import SCHEDULER_NAMES, SCHEDULERS, SpaceSettings
from study.trainable import TrialData, train_trial

ASHA_STATE, OPTUNA_DB = ASHA_RUNGS, "optuna.db"
# Knobs PBT may perturb: those a trial takes from its new config when it restarts from another
# trial's checkpoint. The learning rate is re-applied every epoch from the config (Training.
# base_lrs, set_epoch_lr), whereas weight decay and momentum come back from the optimiser's
# saved state and the architecture from the weights: perturbing those would change nothing.
PBT_KNOBS = ("lr",)
# schedulers whose state survives a driver kill: ASHA's rungs are saved to asha_rungs.parquet
# (StudyASHA), FIFO has none; Tuner.restore rebuilds any other as it was constructed (ray#30838)
RESUMABLE = ("asha", "fifo")


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


JOURNAL_SCHEME = "journal"
OPTUNA_STORAGE_FORMS = (
    "an RDB URL (postgresql://HOST/DB, mysql://..., sqlite:///PATH) or journal:///ABSOLUTE/PATH.log"
)


def optuna_storage_url(url: str | None, study_dir: str) -> str:
    """The study's Optuna storage: --optuna-storage, else the SQLite file of `optuna_db`."""
    return url or f"sqlite:///{optuna_db(study_dir)}"


def _journal_path(url: str) -> Path:
    u = urlsplit(url)
    if u.netloc or not u.path.startswith("/"):
        raise ValueError(f"--optuna-storage {url}: expected journal:///ABSOLUTE/PATH.log")
    return Path(u.path)


def _is_journal(path: Path) -> bool:
    """Empty, or its first line is one of Optuna's journal records (JSON with an op_code)."""
    with path.open("rb") as f:
        first = f.readline()
    if not first:
        return True
    try:
        return "op_code" in json.loads(first)
    except (ValueError, TypeError):
        return False


def open_optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna's storage for a URL: `journal:///path` is a JournalStorage log file (one file,
    appended under a file lock; put it on storage that the driver and optuna-dashboard share),
    anything else an RDBStorage (PostgreSQL or MySQL: several readers while the study runs)."""
    if urlsplit(url).scheme == JOURNAL_SCHEME:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(_journal_path(url))))
    return optuna.storages.RDBStorage(url)


def check_optuna_storage(url: str, name: str, resume: bool) -> None:
    """Before Ray starts: the URL has a known form, its database driver is installed, the
    database answers, and a new study does not take the name of one already stored there
    (Ray's searcher would silently continue that study: load_if_exists)."""
    if urlsplit(url).scheme == JOURNAL_SCHEME:
        path = _journal_path(url)
        if not path.parent.is_dir():
            raise ValueError(f"--optuna-storage {url}: directory {path.parent} does not exist")
        if not path.exists():  # checked without creating it: a failed start leaves nothing
            return
        if not _is_journal(path):  # Optuna would append to any file it is given
            raise ValueError(f"--optuna-storage {url}: {path} exists and is not an Optuna journal")
    else:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url).get_dialect().import_dbapi()
        except ArgumentError as e:
            raise ValueError(
                f"--optuna-storage {st.redact(url)}: expected {OPTUNA_STORAGE_FORMS}"
            ) from e
        except ImportError as e:
            raise ValueError(
                f"--optuna-storage {st.redact(url)}: its database driver is not installed "
                f"({e}; for PostgreSQL: pip install -e '.[postgres]')"
            ) from e
    try:
        names = optuna.get_all_study_names(open_optuna_storage(url))
    except Exception as e:  # the driver's own error says what is wrong (host, password, file)
        # its first line only (SQLAlchemy appends a "Background on this error" line)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"--optuna-storage {st.redact(url)}: cannot open it ({why})") from e
    if name in names and not resume:
        raise ValueError(
            f"--optuna-storage {st.redact(url)} already holds a study named {name!r}: "
            "choose another --name (or --resume it)"
        )


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


def pbt_knobs(settings: SpaceSettings) -> list[str]:
    """The PBT_KNOBS the space leaves nuisance (its roles; unlisted names are nuisance)."""
    knobs = [k for k in PBT_KNOBS if settings.roles.get(k, "nuisance") == "nuisance"]
    if not knobs:
        raise ValueError(
            f"SpaceSettings.roles={settings.roles}: scheduler 'pbt' perturbs only nuisance "
            f"knobs it can change mid-trial ({', '.join(PBT_KNOBS)}), and the roles leave none"
        )
    return knobs


def check_resumable(scheduler: str, study_dir: str) -> None:
    """--resume: before Ray starts, refuse a scheduler whose decisions would restart empty (a study
    whose tuner never existed starts afresh: nothing to resume)."""
    if scheduler not in RESUMABLE and tune.Tuner.can_restore(study_dir):
        raise ValueError(
            f"--resume: cannot resume rung state for {SCHEDULER_NAMES.get(scheduler, scheduler)} "
            f"(scheduler {scheduler!r}: Ray rebuilds it empty, so its decisions after the "
            f"resume would not be those of an uninterrupted run); schedulers that resume: "
            f"{', '.join(RESUMABLE)}. The finished trials stay in trials.parquet"
        )


def make_scheduler(settings: SpaceSettings, state_path: str, seed: int = 0) -> TrialScheduler:
    """The one place that builds a study's early stopper from its settings (time unit: epochs;
    metric and mode: the study's). `state_path`: where ASHA keeps its rung records."""
    common = {"time_attr": "epoch", "metric": settings.metric, "mode": settings.mode}
    kind = settings.scheduler
    if kind == "asha":
        return StudyASHA(
            **common,
            max_t=settings.max_epochs,
            grace_period=settings.grace_period,
            reduction_factor=settings.reduction_factor,
            state_path=state_path,
        )
    if kind == "hyperband":  # synchronous: a rung's decision waits for all of its bracket
        return HyperBandScheduler(
            **common, max_t=settings.max_epochs, reduction_factor=settings.reduction_factor
        )
    if kind == "median":
        # stops a trial whose best so far is below the median of the others' running means at
        # the same epoch, from grace_period on, once 3 others have reached it (Ray's default)
        return MedianStoppingRule(**common, grace_period=settings.grace_period)
    if kind == "pbt":
        # trials.parquet keeps a trial's first config; epochs.parquet's lr, the rate of each epoch
        return PopulationBasedTraining(
            **common,
            perturbation_interval=settings.grace_period,
            # the population's draw is the space's; PBT only perturbs (no resampling)
            custom_explore_fn=PerturbKnobs(pbt_knobs(settings), seed),
            synch=False,
        )
    if kind == "fifo":
        return FIFOScheduler()
    raise ValueError(f"unknown scheduler {kind!r}; expected one of {', '.join(SCHEDULERS)}")


def pbt_population(
    space_fn: Callable[[optuna.Trial], dict],
    settings: SpaceSettings,
    constants: dict[str, Any],
    seed: int,
    grid: dict[str, list] | None,
) -> list[dict]:
    """PBT's trials, drawn up front by the space's sampler in an in-memory Optuna study (Ray
    accepts no searcher with PBT), each config as StudySearch would have made it."""
    knobs = pbt_knobs(settings)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory"
    try:
        study = optuna.create_study(sampler=make_sampler(settings.sampler, seed, grid))
    finally:
        optuna.logging.set_verbosity(verbosity)
    for point in settings.starting_points:
        study.enqueue_trial(point)
    configs = []
    for _ in range(settings.num_samples):
        trial = study.ask()
        configs.append(trial_config(space_fn, trial, constants, seed))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # a grid sampler moves on
    if not any(k in c for c in configs for k in knobs):
        raise ValueError(
            f"scheduler 'pbt': the space's configs set none of {', '.join(knobs)}, the knobs "
            "PBT perturbs"
        )
    return configs


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
) -> tune.Tuner:
    study_dir = st.join(storage, name)
    if optuna_storage is None:
        optuna_db(study_dir).parent.mkdir(parents=True, exist_ok=True)
    if settings.scheduler == "pbt":  # Ray refuses a searcher with PBT: no Optuna study
        search_alg = Population(
            pbt_population(space_fn, settings, constants, seed, grid), max_concurrent or 0
        )
    else:
        searcher = make_searcher(
            space_fn, settings, constants, seed, grid, optuna_storage, name, study_dir
        )
        search_alg = ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
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
            callbacks=[
                ResultsWriter(
                    study_dir,
                    dataset=dataset,
                    columns=declared_columns(space_fn, settings, constants),
                ),
                # trial start, epoch and end lines and status lines (study.console)
                ConsoleCallback(settings.num_samples, settings.metric, settings.mode),
                *live_report_callbacks(study_dir, reports),  # after the writer has flushed
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
    tuner.pkl: nothing ran) starts now, from the beginning, with the recorded settings."""
    study_dir = st.join(storage, name)
    check_resumable(kwargs["settings"].scheduler, study_dir)
    if not tune.Tuner.can_restore(study_dir):
        return build_tuner(storage=storage, name=name, data=data, resources=resources, **kwargs)
    pull_optuna_db(study_dir)
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    return tune.Tuner.restore(
        study_dir, trainable=trainable, resume_unfinished=True, resume_errored=True
    )
