"""The driver of one study: open the data once, build or restore the tuner, run it, score the
best trials on the test split, write the tables and the report.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import ray
from ray import tune
from ray.tune.error import TuneError

from study import console
from study import storage as st
from study.data import default_data_dir
from study.data import open_dataset as _open
from study.data.store import DataChangedError
from study.evaluation import confirm, probe
from study.evaluation.test_split import evaluate_best
from study.results.errors import StudyFileError
from study.results.lookups import select_top
from study.results.schema import STUDY_JSON, TRIALS
from study.results.study_json import new_record, now, resumed_record
from study.results.tables import read_json, read_table, write_json
from study.run.lifecycle import Interrupted, Lifecycle, mark, resume_command, signals_stop
from study.run.overrides import check_set_on_resume, parse_set, resolve, split_smoke
from study.run.preflight import (
    UsageError,
    check_args,
    check_reports,
    check_space_builds,
    check_study_files,
    hold_study,
    make_storage,
    recorded,
    study_record,
)
from study.run.provenance import git_commit, has_tensorboard, versions
from study.run.request import PreparedStudy, Request
from study.run.summary import print_confirmed, print_leaderboard, print_summary
from study.spaces.constants import trial_constants
from study.spaces.cover import describe_hyperparameters
from study.spaces.loader import SpaceFunction, load_space, space_sha256
from study.tuning.gpu_check import check_worker_gpu
from study.tuning.optuna_storage import check_optuna_storage, optuna_storage_url, push_optuna_db
from study.tuning.ray_state import (
    check_nothing_ran,
    check_saved_state,
    put_back_last_save,
    say_put_back,
)
from study.tuning.schedulers import check_resumable, pbt_population
from study.tuning.searcher import make_sampler
from study.tuning.trackers import check_trackers, tracker_callbacks
from study.tuning.trial_data import input_filters, trial_data
from study.tuning.tuner import build_tuner, restore_tuner

# torch, Ray, pandas and Optuna are imported where they are used: `--help` and `--list` answer
# without them
if TYPE_CHECKING:
    from study.data.store import PreparedDataset


def outcome(study_dir: str, rank: dict[str, Any]) -> tuple[int, str]:
    """(1, why) when no trial produced a usable result (every trial errored): the run failed
    even though Tune finished; else (0, "")."""
    trials = read_table(study_dir, TRIALS)
    if trials is not None and select_top(trials, 1, rank):
        return 0, ""
    counts = {} if trials is None else trials["status"].value_counts().to_dict()
    reasons = [] if trials is None else trials["status_reason"].dropna().astype(str).str.strip()
    example = next((f"; e.g. {r.splitlines()[0][:300]}" for r in reasons if r), "")
    tally = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no trial reported"
    return 1, f"no trial finished ({tally}; {st.redact(study_dir)}){example}"


def open_dataset(data_dir: str, name: str) -> PreparedDataset:
    return _open(data_dir, name)


def prepare(a: Request) -> PreparedStudy:
    """Everything that can be wrong with the command line, checked before Ray starts (see
    study.run.preflight); the data set is opened here, once, and handed on."""
    check_args(a)
    storage = st.absolute(a.storage)
    st.check_reachable(storage, "--storage")
    meta = study_record(storage, a.name, True) if a.resume else None
    if meta is not None:
        where = st.join(storage, a.name, STUDY_JSON)
        a, settings = recorded(a, meta, where)
        check_set_on_resume(parse_set(a.set), settings, where)
        space = load_space(a.space)
        constants = trial_constants(settings, a.cpus_per_trial)
        smoke_cfg = split_smoke(settings)[1] if a.smoke_test else {}
    else:
        a = replace(a, seed=0 if a.seed is None else a.seed)
        space = load_space(a.space)
        settings, constants, smoke_cfg = resolve(a, space)
    name = a.name or st.check_name(
        f"{space.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}", "study name from --space (use --name)"
    )
    data_dir = st.absolute(a.data_dir or default_data_dir())
    ds = open_dataset(data_dir, settings.dataset)
    if meta is None:
        study_record(storage, name, False)
    elif meta.get("dataset", {}).get("version", ds.version) != ds.version:
        raise UsageError(
            f"--resume: the study ran on {ds.name} version {meta['dataset']['version']}; "
            f"{st.redact(data_dir)} now holds version {ds.version}"
        )
    study_dir = st.join(storage, name)  # the one place it is computed
    check_reports(a, name)
    check_trackers(a.callback, study_dir)
    if a.optuna_storage and settings.scheduler == "pbt":
        raise UsageError(
            f"--optuna-storage {st.redact(a.optuna_storage)}: scheduler 'pbt' keeps no Optuna "
            "study (its population is drawn up front), so there is nothing to store there; drop "
            "the option or choose another scheduler (--set scheduler=asha)"
        )
    argv = a.argv
    if a.optuna_storage:
        check_optuna_storage(a.optuna_storage, name, a.resume)
        # study.json records the command: never a database password
        argv = tuple(x.replace(a.optuna_storage, st.redact(a.optuna_storage)) for x in argv)
    fn = SpaceFunction(a.space, smoke_cfg)
    # small data, init_from
    constants = confirm.prepare(a.plan, a.init_from, a.seed, space, settings, fn, ds, constants)
    check_space_builds(fn, settings, constants, len(ds.classes))
    confirm.check_warm_start(fn, constants, ds.classes)
    probes = probe.plan(a.probe, fn, settings, constants, space.name)  # --probe on no backbone
    # a grid sampler without GRID, a PBT without a knob to perturb or a resume that would restart
    # the scheduler empty fail here, not in Ray

    grid = getattr(space.module, "GRID", None)
    make_sampler(settings.sampler, a.seed, grid)
    if settings.scheduler == "pbt":
        pbt_population(fn, settings, constants, a.seed, grid)
    if a.resume:
        check_resumable(settings.scheduler, study_dir)
        check_study_files(study_dir, settings.scheduler, a.optuna_storage)  # our own tables
    make_storage(storage, study_dir if a.resume else None)
    # Ray's saved state parses, or the study is refused here, not started over after Ray
    restores = a.resume and tune.Tuner.can_restore(study_dir)
    if restores:
        check_saved_state(study_dir)
    elif a.resume:
        check_nothing_ran(study_dir)
    # last, before Ray: the atomic decision that this driver runs the study (run_study releases it)
    lock = hold_study(study_dir, name, a.resume, argv)
    if a.resume and (partial := st.remove_partial_writes(study_dir)):
        console.say(f"   removed what a killed run left half-written: {', '.join(partial)}")
    if restores:  # Tune restores one whole save, not files of two
        try:
            say_put_back(study_dir, put_back_last_save(study_dir))
        except BaseException:  # a full disk: the study stays as it was, not held
            lock.release()
            raise
    return PreparedStudy(
        request=a,
        name=name,
        storage=storage,
        study_dir=study_dir,
        space=space,
        space_fn=fn,
        settings=settings,
        constants=constants,
        dataset=ds,
        data_dir=data_dir,
        seed=a.seed,
        argv=argv,
        space_sha256=space_sha256(fn.ref),
        lock=lock,
        probes=probes,
    )


def run_study(study: PreparedStudy, lifecycle: Lifecycle | None = None) -> int:
    """Run the prepared study; the exit code, study.json's status and the last line printed all
    say how it ended (study.run.lifecycle). The study's driver lock, taken by `prepare`, is held
    to the end (tuning, test, confirmation, report, the final status) and removed however it
    ends."""
    lifecycle = lifecycle or Lifecycle()
    record: dict[str, Any] = {}  # study.json as this run last wrote it
    lifecycle.on_second = lambda reason: _fail(study, record, reason, "interrupted")
    with signals_stop(lifecycle):
        try:
            return _run(study, lifecycle, record)
        except Interrupted as stop:
            _end(study, record, "interrupted", str(stop))
            where = st.redact(study.study_dir)
            if not record and not study.request.resume:  # no study.json: nothing to resume
                print(f"interrupted: {stop}; the study had not started", file=sys.stderr)
                return stop.exit_code
            print(f"interrupted: {stop}; finished trials are kept in {where}", file=sys.stderr)
            print(f"resume with: {resume_command(study.name, st.redact(study.storage))}")
            return stop.exit_code
        except DataChangedError as e:  # one line: what changed, what to do
            _end(study, record, "failed", str(e))
            print(f"error: {e}", file=sys.stderr)
            return 1
        except StudyFileError as e:  # a damaged study file, a full or read-only disk: named
            cause = getattr(e, "cause", e)  # raised in a Ray task: the original, without its trace
            _fail(study, record, st.redact(str(cause)))
            print(f"error: {st.redact(str(cause))}", file=sys.stderr)
            return 2
        except Exception as e:
            _fail(study, record, f"{type(e).__name__}: {' '.join(str(e).split())}"[:500])
            raise
        finally:
            if study.lock is not None:
                study.lock.release()


def _file_error(e: BaseException | None) -> StudyFileError | None:
    """The StudyFileError that `e` was raised from, if any (Tune re-raises a callback's error as
    a TuneError holding only its traceback's text)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, StudyFileError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _fail(
    study: PreparedStudy, record: dict[str, Any], reason: str, status: str = "failed"
) -> None:
    """Record `status`, if the disk takes it: one too full (or read-only) for the run's files
    cannot take its status either, and the run's own error, naming the file it failed on, is
    the one to report."""
    with contextlib.suppress(StudyFileError):
        _end(study, record, status, reason)


def _end(study: PreparedStudy, record: dict[str, Any], status: str, reason: str) -> None:
    """Record how the run ended, if it got as far as writing its study.json."""
    if record:
        record.update(mark(record, status, reason))
        write_json(record, st.join(study.study_dir, STUDY_JSON))


def _auth_hint(joined: str | None) -> str:
    """Ray 2.60 sends a driver's token to an address it is given (argument or RAY_ADDRESS) only
    with RAY_AUTH_MODE=token: it turns token auth on by itself for a new local Ray and for "auto"
    alone (ray/_private/worker.py). A cluster with token auth then refuses the driver after its
    20 tries with "Failed to connect", which names no token."""
    if joined in (None, "", "auto") or "RAY_AUTH_MODE" in os.environ:
        return ""
    return (
        "; RAY_AUTH_MODE is unset, so Ray sent no token: set RAY_AUTH_MODE=token to join a"
        " cluster with token authentication (docs/cluster.md)"
    )


def _run(study: PreparedStudy, lifecycle: Lifecycle, record: dict[str, Any]) -> int:
    a, settings, ds, study_dir = study.request, study.settings, study.dataset, study.study_dir
    lifecycle.enter("starting Ray")
    console.phase("starting Ray")

    # no "A new study created in RDB" line: the study's own lines say what starts
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Tune's classic reporter: silent at verbose=0 and its table at -v; the newer one prints a
    # configuration box and a TensorBoard hint into /tmp/ray/... at any verbosity
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's experiment state is saved at its own pace ("auto": at most ~5 % of the time, at
    # least every 10 s), after every num_to_keep checkpoints of a trial and when tuning ends or is
    # interrupted; its files appear whole (study.storage.ray_filesystem). A killed driver re-runs
    # at most the epochs since the last save, whose rows then replace the first ones
    # (benchmarks/state_writes.py counts the writes; 0 rewrote it at every step of Tune's loop)
    # reuse_actors: a worker waits this long for the last trial's thread before taking the next
    # (Ray's default 2 s is short on a loaded machine; past it Tune starts a fresh worker)
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")
    # num_to_keep=2 makes Tune save its state after every 2 checkpoints of a trial (so that the
    # state never names a deleted one); with 2-second epochs Tune then warns, in a paragraph, of
    # a "bottleneck" that is the price of that consistency: nothing for a user to do
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    t0 = time.time()
    gpus = a.gpus_per_trial
    started_ray = not ray.is_initialized()  # a caller's Ray (tests, notebooks) stays up after
    try:
        ray.init(
            address=a.address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            ignore_reinit_error=True,
        )
    except Exception as e:  # refused connection, auth, version mismatch: whatever Ray raises
        ray.shutdown()
        joined = a.address or os.environ.get("RAY_ADDRESS")
        named = f"--address {a.address}" if a.address else f"RAY_ADDRESS {joined}"
        where = f"{named}: cannot connect to Ray" if joined else "cannot start Ray"
        why = (str(e).strip().splitlines() or [""])[0]
        print(f"error: {where} ({type(e).__name__}: {st.redact(why)}){_auth_hint(joined)}",
              file=sys.stderr)  # fmt: skip
        return 2 if a.address else 1
    lifecycle.install()  # after ray.init, which takes SIGTERM for itself
    try:
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        # a worker's torch that cannot use its GPU would train every trial on the CPU
        if unusable := check_worker_gpu(gpus, a.cpus_per_trial):
            print(f"error: {unusable}", file=sys.stderr)
            return 1
        # only now: a study folder made before a failed connection blocked its name both ways
        if not st.is_remote(study_dir):  # object stores have no directories to create
            Path(study_dir).mkdir(parents=True, exist_ok=True)
        study = replace(study, resources={"cpu": a.cpus_per_trial, "gpu": gpus})
        resources = study.resources
        meta = new_record(
            name=study.name,
            space=study.space.name,
            space_ref=study.space_fn.ref,
            space_sha256=study.space_sha256,
            settings=settings,
            seed=study.seed,
            argv=list(study.argv),
            dataset=ds,
            data_dir=study.data_dir,
            run={
                "resources": resources,
                "max_concurrent": a.max_concurrent,
                "smoke_test": a.smoke_test,
            },
            hyperparameters=describe_hyperparameters(study.space),
            # PBT asks no searcher (Ray refuses one): no optuna.db to point at
            optuna_storage=None
            if settings.scheduler == "pbt"
            else optuna_storage_url(a.optuna_storage, study_dir),
            set_values=parse_set(a.set),
            code={"git_commit": git_commit(), "versions": versions()},
        )
        if a.resume:
            meta = resumed_record(read_json(st.join(study_dir, STUDY_JSON)), meta["started"])
        record.update(mark(meta, "running"))
        write_json(record, st.join(study_dir, STUDY_JSON))
        # decode once, in the driver, before fit(): every trial gets this same object
        lifecycle.enter("decoding")
        filters = input_filters(study.space_fn, settings, study.constants)
        console.phase(
            f"decoding {ds.name} train and val at {settings.image_size} px, resized "
            f"{' and '.join(filters)} (cached on disk after the first study at this size)"
        )
        data = trial_data(ds, settings, filters, study.seed)
        kwargs = dict(
            space_fn=study.space_fn,
            settings=settings,
            constants=study.constants,
            data=data,
            dataset=ds.name,
            storage=study.storage,
            name=study.name,
            seed=study.seed,
            resources=resources,
            max_concurrent=a.max_concurrent,
            grid=getattr(study.space.module, "GRID", None),
            optuna_storage=a.optuna_storage,
            reports=study.reports_dir,
            verbose=1 if a.verbose else 0,
            callbacks=tracker_callbacks(a.callback, study_dir, study.name),
        )
        # restore_tuner starts afresh a study whose first run ended before its tuner existed
        tuner = restore_tuner(**kwargs) if a.resume else build_tuner(**kwargs)
        console.phase(
            f"tuning: {settings.num_samples} trials of at most {settings.max_epochs} epochs "
            f"({settings.sampler} sampler, {settings.scheduler}); results in {st.redact(study_dir)}"
        )
        if has_tensorboard():
            console.say(f"   TensorBoard (optional): tensorboard --logdir {st.redact(study_dir)}")
        lifecycle.enter("tuning")
        try:
            tuner.fit()
        except TuneError as e:  # our results writer could not write (a full disk): say which file
            raise _file_error(e) or e from None
        lifecycle.enter("test evaluation")  # raises if a signal stopped the tuning
        record["tuning_finished"] = now()
        write_json(record, st.join(study_dir, STUDY_JSON))
        evaluate_best(study_dir, ds, settings, resources)
        lifecycle.enter("confirmation")
        confirmed_rows = confirm.run(study_dir, ds, settings, resources, a.plan, study.seed)
        lifecycle.enter("linear probe")  # after the test evaluation, as it reads test too
        probe.run(study_dir, ds, settings, resources, study.probes)
        record["wall_s"] = time.time() - t0
        write_json(record, st.join(study_dir, STUDY_JSON))  # the summary reads it
    finally:
        push_optuna_db(study_dir)  # SQLite cannot live on s3://: upload this run's copy
        if started_ray:
            ray.shutdown()
            lifecycle.install()  # ray.shutdown puts SIGTERM back to its default
    rank = study.rank
    print_leaderboard(study_dir, rank)
    print_confirmed(confirmed_rows, study_dir)  # last: ranked by the confirmed mean

    print_summary(study_dir, ds.manifest, rank)  # the four numbers; trials at chance
    rc, why = outcome(study_dir, rank)
    record["finished"] = now()
    _end(study, record, "finished" if rc == 0 else "failed", why)
    if study.reports_dir is not None:
        lifecycle.enter("report")
        console.phase("writing the report")
        try:
            from study.report import build_report

            out = build_report(study_dir, study.reports_dir)
            print(f"report: {out}")
        except (ImportError, ValueError) as e:  # optional for a run; say why it is missing
            print(f"report not written ({st.redact(str(e))})", file=sys.stderr)
    if why:
        print(f"error: {why}", file=sys.stderr)  # the last line: why the run failed
    return rc
