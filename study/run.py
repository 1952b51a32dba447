"""Run one hyperparameter study (Ray Tune + Optuna + ASHA), locally or on a Ray cluster.

Everything that can be wrong with the command line is checked before Ray starts.
`study run --space NAME` is `python -m study.run --space NAME`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study import confirm_options, console
from study import storage as st
from study.after_tuning import (
    evaluate_best,
    git_commit,
    has_tensorboard,
    outcome,
    print_leaderboard,
    versions,
)
from study.overrides import apply_set, check_set_on_resume, parse_set, settings_types
from study.schema import STUDY_JSON

# torch, Ray, pandas and Optuna are imported where they are used: `--help` and `--list` answer
# without them
if TYPE_CHECKING:
    from study.settings import SpaceSettings
    from study.spaces import Space

SMOKE = {"num_samples": 2, "max_epochs": 2, "grace_period": 1, "top_k": 1}


def open_dataset(data_dir: str, name: str):
    from study.data import open_dataset as _open  # torch: imported when a study runs

    return _open(data_dir, name)


def parse_args(argv: list[str] | None, prog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog or "python -m study.run",
        description=__doc__.split("\n")[0],
        epilog="Settings of the space without a flag of their own: --set KEY=VALUE, e.g. "
        "--set sampler=random --set image_size=64 ('--set help' lists the keys).",
    )
    p.add_argument(
        "--space",
        help="a name from --list, or a path to your own space .py file (--resume: the study's)",
    )
    p.add_argument("--list", action="store_true", help="list the shipped spaces and exit")
    p.add_argument("--num-samples", type=int, help="trials to run (default: the space's)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial at most (ASHA's max_t)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="fractions pack trials on one card (default 1 if a GPU is visible, else 0)",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=1.0,
        help="CPUs Ray reserves for each trial, also its torch threads (default 1)",
    )
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: all)")
    p.add_argument(
        "--storage",
        default="studies",
        help="where study directories live: a path, s3://bucket/prefix or gs://bucket/prefix",
    )
    p.add_argument("--name", help="study name (default: <space>-<UTC time>)")
    p.add_argument(
        "--optuna-storage",
        default=None,
        help="the Optuna study's storage, for optuna-dashboard while it runs: an RDB URL "
        "(postgresql://...) or journal:///ABSOLUTE/PATH.log (default: SQLite beside the results)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="prepared data sets, a path or URI (default: $STUDY_DATA_DIR or ./data)",
    )
    p.add_argument("--seed", type=int, help="study seed: sampler, trials, report (default 0)")
    p.add_argument("--address", default=None, help="'auto' joins the running Ray cluster")
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="2 trials x 2 epochs at tiny size: checks the whole path in about a minute",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the study --name with the settings its study.json records",
    )
    p.add_argument("--reports", default="reports", help="where the dashboard is written")
    p.add_argument("--no-report", action="store_true", help="skip writing the dashboard")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the space (SpaceSettings: sampler, image_size, grace_period, "
        "top_k, ...; JSON for roles, starting_points, smoke); repeatable; recorded in "
        "study.json. '--set help' lists the keys",
    )
    talk = p.add_mutually_exclusive_group()
    talk.add_argument(
        "-q", "--quiet", action="store_true", help="print only the summary (leaderboard, report)"
    )
    talk.add_argument(
        "-v", "--verbose", action="store_true", help="also print Ray Tune's own progress table"
    )
    confirm_options.add_arguments(p)  # --confirm-seeds/-folds, --refit, --ensemble, --tta, ...
    return p.parse_args(argv)


def resolve(a: argparse.Namespace, space: Space) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Settings after smoke, --set and flag overrides (in that order), config constants, and the
    smoke config overrides."""
    settings = space.settings
    smoke_cfg: dict[str, Any] = {}
    if a.smoke_test:
        smoke_set, smoke_cfg = split_smoke(settings)
        settings = settings.override(**SMOKE, **smoke_set)
    given = parse_set(getattr(a, "set", None) or [])
    settings = apply_set(
        settings, given, {"num_samples": a.num_samples, "max_epochs": a.max_epochs}
    )
    # a shorter --max-epochs pulls ASHA's first rung down with it (unless --set names the rung)
    max_epochs = a.max_epochs or settings.max_epochs
    grace = settings.grace_period
    settings = settings.override(
        num_samples=a.num_samples,
        max_epochs=max_epochs,
        grace_period=grace if "grace_period" in given else min(grace, max_epochs),
    )
    from study.preflight import trial_constants

    return settings, trial_constants(settings, a.cpus_per_trial), smoke_cfg


def split_smoke(settings: SpaceSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """A space's `smoke` overrides: (those of settings, those of each trial's config)."""
    from study.settings import SpaceSettings

    known = {f.name for f in fields(SpaceSettings)}
    smoke = settings.smoke.items()
    return {k: v for k, v in smoke if k in known}, {k: v for k, v in smoke if k not in known}


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    a = parse_args(argv, prog)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    console.set_level(
        console.QUIET if a.quiet else console.VERBOSE if a.verbose else console.NORMAL
    )
    if a.list:
        from study.spaces import list_spaces, load_space

        for name in list_spaces():
            print(load_space(name).summary)
        return 0
    if any(item.strip() == "help" for item in a.set):
        print("--set KEY=VALUE keys (SpaceSettings fields) and their types:")
        for key, kind in settings_types().items():
            print(f"  {key:18s} {kind}")
        return 0
    console.phase("checking the command, the space (every choice builds its model) and the data")
    try:
        plan = prepare(a)
    except (ValueError, OSError) as e:  # UsageError, NotPreparedError, a bad space or setting
        print(f"error: {st.redact(str(e))}", file=sys.stderr)  # never a URI's credentials
        return 2
    return run_study(a, *plan)


def prepare(a: argparse.Namespace) -> tuple:
    """Everything that can be wrong with the command line, checked before Ray starts (see
    study.preflight); returns run_study's arguments."""
    from study import confirm
    from study.data import default_data_dir
    from study.preflight import (
        UsageError,
        check_args,
        check_reports,
        check_space_builds,
        make_storage,
        recorded,
        study_record,
        trial_constants,
    )
    from study.spaces import SpaceFunction, load_space

    check_args(a)
    storage = st.absolute(a.storage)
    st.check_reachable(storage, "--storage")
    meta = study_record(storage, a.name, True) if a.resume else None
    if meta is not None:
        where = st.join(storage, a.name, STUDY_JSON)
        settings = recorded(a, meta, where)
        check_set_on_resume(parse_set(a.set), settings, where)
        space = load_space(a.space)
        constants = trial_constants(settings, a.cpus_per_trial)
        smoke_cfg = split_smoke(settings)[1] if a.smoke_test else {}
    else:
        a.seed = 0 if a.seed is None else a.seed
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
    check_reports(a, name)
    if a.optuna_storage and settings.scheduler == "pbt":
        raise UsageError(
            f"--optuna-storage {st.redact(a.optuna_storage)}: scheduler 'pbt' keeps no Optuna "
            "study (its population is drawn up front), so there is nothing to store there; drop "
            "the option or choose another scheduler (--set scheduler=asha)"
        )
    if a.optuna_storage:
        from study.tune import check_optuna_storage

        check_optuna_storage(a.optuna_storage, name, a.resume)
        # study.json records the command: never a database password
        a.argv = [x.replace(a.optuna_storage, st.redact(a.optuna_storage)) for x in a.argv]
    fn = SpaceFunction(a.space, smoke_cfg)
    constants = confirm.prepare(a, space, settings, fn, ds, constants)  # small data, init_from
    check_space_builds(fn, settings, constants, len(ds.classes))
    confirm.check_warm_start(fn, constants, ds.classes)
    # a grid sampler without GRID, a PBT without a knob to perturb or a resume that would restart
    # the scheduler empty fail here, not in Ray
    from study.tune import check_resumable, make_sampler, pbt_population

    grid = getattr(space.module, "GRID", None)
    make_sampler(settings.sampler, a.seed, grid)
    if settings.scheduler == "pbt":
        pbt_population(fn, settings, constants, a.seed, grid)
    if a.resume:
        check_resumable(settings.scheduler, st.join(storage, name))
    make_storage(storage)
    return space, settings, constants, fn, ds, data_dir, storage, name


def run_study(
    a, space: Space, settings, constants, fn, ds, data_dir: str, storage: str, name: str
) -> int:
    console.phase("starting Ray")
    import optuna
    import ray

    from study import confirm
    from study.spaces import describe_hyperparameters
    from study.study_json import new_record, now, resumed_record
    from study.tables import read_json, write_json
    from study.tune import build_tuner, optuna_storage_url, push_optuna_db, restore_tuner

    # no "A new study created in RDB" line: the study's own lines say what starts
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Tune's classic reporter: silent at verbose=0 and its table at -v; the newer one prints a
    # configuration box and a TensorBoard hint into /tmp/ray/... at any verbosity
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    study_dir = st.join(storage, name)
    # save Tune's experiment state at every step, so a killed driver resumes without re-running
    # or re-deciding anything (the state is small next to an epoch of training)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    # reuse_actors: a worker waits this long for the last trial's thread before taking the next
    # (Ray's default 2 s is short on a loaded machine; past it Tune starts a fresh worker)
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")
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
        where = f"--address {a.address}: cannot connect to Ray" if a.address else "cannot start Ray"
        why = (str(e).strip().splitlines() or [""])[0]
        print(f"error: {where} ({type(e).__name__}: {st.redact(why)})", file=sys.stderr)
        return 2 if a.address else 1
    try:
        # only now: a study folder made before a failed connection blocked its name both ways
        if not st.is_remote(study_dir):  # object stores have no directories to create
            Path(study_dir).mkdir(parents=True, exist_ok=True)
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        resources = {"cpu": a.cpus_per_trial, "gpu": gpus}
        meta = new_record(
            name=name,
            space=space.name,
            space_ref=fn.ref,
            settings=settings,
            seed=a.seed,
            argv=a.argv,
            dataset=ds,
            data_dir=data_dir,
            run={
                "resources": resources,
                "max_concurrent": a.max_concurrent,
                "smoke_test": a.smoke_test,
            },
            hyperparameters=describe_hyperparameters(space),
            # PBT asks no searcher (Ray refuses one): no optuna.db to point at
            optuna_storage=None
            if settings.scheduler == "pbt"
            else optuna_storage_url(a.optuna_storage, study_dir),
            set_values=parse_set(a.set),
            code={"git_commit": git_commit(), "versions": versions()},
        )
        if a.resume:
            meta = resumed_record(read_json(st.join(study_dir, STUDY_JSON)), meta["started"])
        write_json(meta, st.join(study_dir, STUDY_JSON))
        # decode once, in the driver, before fit(): every trial gets this same object
        filters = confirm.input_filters(fn, settings, constants)
        console.phase(
            f"decoding {ds.name} train and val at {settings.image_size} px, resized "
            f"{' and '.join(filters)} (cached on disk after the first study at this size)"
        )
        data = confirm.trial_data(ds, settings, filters, a.seed)
        kwargs = dict(
            space_fn=fn,
            settings=settings,
            constants=constants,
            data=data,
            dataset=ds.name,
            storage=storage,
            name=name,
            seed=a.seed,
            resources=resources,
            max_concurrent=a.max_concurrent,
            grid=getattr(space.module, "GRID", None),
            optuna_storage=a.optuna_storage,
            reports=None if a.no_report else str(Path(a.reports) / name),
            verbose=1 if a.verbose else 0,
        )
        # restore_tuner starts afresh a study whose first run ended before its tuner existed
        tuner = restore_tuner(**kwargs) if a.resume else build_tuner(**kwargs)
        console.phase(
            f"tuning: {settings.num_samples} trials of at most {settings.max_epochs} epochs "
            f"({settings.sampler} sampler, {settings.scheduler}); results in {st.redact(study_dir)}"
        )
        if has_tensorboard():
            console.say(f"   TensorBoard (optional): tensorboard --logdir {st.redact(study_dir)}")
        tuner.fit()
        meta["tuning_finished"] = now()
        evaluate_best(study_dir, data_dir, ds.name, settings, resources)
        plan, rule = confirm_options.plan_of(a), ds.manifest["split_rule"]
        confirmed_rows = confirm.run(
            study_dir, data_dir, ds.name, settings, resources, plan, a.seed, rule
        )
        meta["finished"] = now()
        meta["wall_s"] = time.time() - t0
        write_json(meta, st.join(study_dir, STUDY_JSON))
    finally:
        push_optuna_db(study_dir)  # SQLite cannot live on s3://: upload this run's copy
        if started_ray:
            ray.shutdown()
    rank = {"metric": settings.metric, "mode": settings.mode}
    print_leaderboard(study_dir, rank)
    confirm.print_confirmed(confirmed_rows, study_dir)  # last: ranked by the confirmed mean
    from study.demo_check import print_summary

    print_summary(study_dir, ds.manifest, rank)  # the four numbers; trials at chance
    if not a.no_report:
        console.phase("writing the report")
        try:
            from study.report import build_report

            out = build_report(study_dir, str(Path(a.reports) / name))
            print(f"report: {out}")
        except (ImportError, ValueError) as e:  # optional for a run; say why it is missing
            print(f"report not written ({st.redact(str(e))})", file=sys.stderr)
    return outcome(study_dir, rank)


if __name__ == "__main__":
    from study.cli import leaving

    sys.exit(leaving(main()))
