"""Ray Tune wiring: Optuna define-by-run sampler, ASHA, resources, storage, results callback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from study import storage as st
from study.live_report import live_report_callbacks
from study.results import ConsoleCallback, ResultsWriter, declared_columns
from study.search import StockSearch, StudyASHA, StudySearch
from study.settings import SpaceSettings
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
        # by default the Optuna study lives next to the results (optuna-dashboard
        # sqlite:///<study>/optuna.db); --optuna-storage puts it where a dashboard can watch it
        storage=open_optuna_storage(optuna_storage_url(optuna_storage, study_dir)),
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
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
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
    if not tune.Tuner.can_restore(study_dir):
        return build_tuner(storage=storage, name=name, data=data, resources=resources, **kwargs)
    pull_optuna_db(study_dir)
    trainable = tune.with_resources(tune.with_parameters(train_trial, data=data), resources)
    return tune.Tuner.restore(
        study_dir, trainable=trainable, resume_unfinished=True, resume_errored=True
    )
