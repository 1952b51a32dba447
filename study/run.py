"""`python -m study.run --space NAME`: one hyperparameter study, locally or on a Ray cluster.

Everything that can be wrong with the command line is checked before Ray starts.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from study import confirm
from study import storage as st
from study.data import NotPreparedError, default_data_dir, load_split, open_dataset
from study.metrics import rank_column
from study.results import (
    GRADCAM,
    PREDICTIONS,
    STUDY_JSON,
    TRIALS,
    read_json,
    read_table,
    write_json,
    write_parquet,
)
from study.spaces import Space, SpaceFunction, describe_hyperparameters, list_spaces, load_space

SMOKE = {"num_samples": 2, "max_epochs": 2, "grace_period": 1, "top_k": 1}


class UsageError(ValueError):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__)
    p.add_argument("--space", help="a name from --list, or a path to your own space .py file")
    p.add_argument("--list", action="store_true", help="list the shipped spaces and exit")
    p.add_argument("--num-samples", type=int, help="trials to run (default: the space's)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial at most (ASHA's max_t)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="fractions pack trials on one card (default 1 if a GPU is visible, else 0)",
    )
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
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
    p.add_argument("--seed", type=int, default=0, help="study seed (sampler, trials, report)")
    p.add_argument("--address", default=None, help="'auto' joins the running Ray cluster")
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="2 trials x 2 epochs at tiny size: checks the whole path in about a minute",
    )
    p.add_argument("--resume", action="store_true", help="continue the study --name")
    p.add_argument("--reports", default="reports", help="where the dashboard is written")
    p.add_argument("--no-report", action="store_true", help="skip writing the dashboard")
    confirm.add_arguments(p)  # --confirm-seeds/-folds, --refit, --ensemble, --tta, --init-from
    return p.parse_args(argv)


def check_args(a: argparse.Namespace) -> None:
    """Reject impossible values with the option's name, before anything expensive."""
    if not a.space:
        raise UsageError("--space NAME is required (see --list)")
    for opt in ("num_samples", "max_epochs", "max_concurrent"):
        v = getattr(a, opt)
        if v is not None and v < 1:
            raise UsageError(f"--{opt.replace('_', '-')} {v}: expected an integer >= 1")
    if a.cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial {a.cpus_per_trial}: expected a number > 0")
    if a.gpus_per_trial is not None and a.gpus_per_trial < 0:
        raise UsageError(f"--gpus-per-trial {a.gpus_per_trial}: expected a number >= 0")
    if a.gpus_per_trial and 1 < a.gpus_per_trial != int(a.gpus_per_trial):
        raise UsageError(f"--gpus-per-trial {a.gpus_per_trial}: above 1 it must be a whole number")
    if a.resume and not a.name:
        raise UsageError("--resume needs --name STUDY (the study to continue)")
    if a.address is None:  # local: we know the machine
        ncpu = os.cpu_count() or 1
        if a.cpus_per_trial > ncpu:
            raise UsageError(f"--cpus-per-trial {a.cpus_per_trial}: this machine has {ncpu} CPUs")
        if a.gpus_per_trial:
            import torch

            if torch.cuda.device_count() < a.gpus_per_trial or not torch.cuda.is_available():
                raise UsageError(
                    f"--gpus-per-trial {a.gpus_per_trial}: this machine has "
                    f"{torch.cuda.device_count()} usable GPU(s)"
                )


def resolve(a: argparse.Namespace, space: Space) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Settings after flag and smoke overrides, config constants, and the smoke config overrides."""
    settings = space.settings
    smoke_cfg: dict[str, Any] = {}
    if a.smoke_test:
        fields = settings.__dataclass_fields__
        smoke_set = {k: v for k, v in space.settings.smoke.items() if k in fields}
        smoke_cfg = {k: v for k, v in space.settings.smoke.items() if k not in fields}
        settings = settings.override(**SMOKE, **smoke_set)
    # a shorter --max-epochs pulls ASHA's first rung down with it
    max_epochs = a.max_epochs or settings.max_epochs
    settings = settings.override(
        num_samples=a.num_samples,
        max_epochs=max_epochs,
        grace_period=min(settings.grace_period, max_epochs),
    )
    threads = max(1, int(a.cpus_per_trial))
    constants = {
        "max_epochs": settings.max_epochs,
        "image_size": settings.image_size,
        "metric": settings.metric,
        "mode": settings.mode,
        "num_threads": threads,
    }
    return settings, constants, smoke_cfg


def check_space_builds(fn, settings, constants: dict[str, Any], num_classes: int) -> None:
    """Sample one config and build its model, so a typo in a space fails now, not in every trial."""
    import optuna

    from study.config import TrainConfig
    from study.models import create_model

    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    cfg = TrainConfig.from_config({**constants, **fn(trial), "seed": 0})
    create_model(cfg.model, num_classes, **cfg.model_options)


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in (
        "study",
        "torch",
        "torchvision",
        "timm",
        "ray",
        "optuna",
        "pandas",
        "pyarrow",
        "plotly",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    if a.list:
        for name in list_spaces():
            print(load_space(name).summary)
        return 0
    try:
        check_args(a)
        space = load_space(a.space)
        settings, constants, smoke_cfg = resolve(a, space)
        data_dir = st.absolute(a.data_dir or default_data_dir())
        ds = open_dataset(data_dir, settings.dataset)
        name = a.name or f"{space.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        storage = st.absolute(a.storage)
        st.check_reachable(storage, "--storage")
        study_dir = st.join(storage, name)
        if st.exists(study_dir) and not a.resume:
            raise UsageError(
                f"study {study_dir} already exists: continue it with --resume "
                f"--name {name}, or choose another --name"
            )
        if a.resume and not st.is_file(st.join(study_dir, STUDY_JSON)):
            raise UsageError(f"--resume: no study at {study_dir} (no {STUDY_JSON})")
        if a.optuna_storage:
            from study.tune import check_optuna_storage, redact

            check_optuna_storage(a.optuna_storage, name, a.resume)
            # study.json records the command: never a database password
            a.argv = [x.replace(a.optuna_storage, redact(a.optuna_storage)) for x in a.argv]
        fn = SpaceFunction(a.space, smoke_cfg)
        constants = confirm.prepare(a, space, settings, fn, ds, constants)  # small data, init_from
        check_space_builds(fn, settings, constants, len(ds.classes))
    except (UsageError, NotPreparedError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_study(a, space, settings, constants, fn, ds, data_dir, storage, name)


def run_study(
    a, space: Space, settings, constants, fn, ds, data_dir: str, storage: str, name: str
) -> int:
    import ray

    from study.trainable import TrialData
    from study.tune import build_tuner, optuna_storage_url, push_optuna_db, redact, restore_tuner

    study_dir = st.join(storage, name)
    if not st.is_remote(study_dir):  # object stores have no directories to create
        Path(study_dir).mkdir(parents=True, exist_ok=True)
    # save Tune's experiment state at every step, so a killed driver resumes without re-running
    # or re-deciding anything (the state is small next to an epoch of training)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    t0 = time.time()
    gpus = a.gpus_per_trial
    ray.init(
        address=a.address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
    try:
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        resources = {"cpu": a.cpus_per_trial, "gpu": gpus}
        meta = {
            "name": name,
            "space": space.name,
            "description": settings.description,
            "seed": a.seed,
            "command": shlex.join(["python", "-m", "study.run", *a.argv]),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished": None,
            "git_commit": git_commit(),
            "versions": versions(),
            "dataset": {
                "name": ds.name,
                "version": ds.version,
                "split_rule": ds.manifest["split_rule"],
                "classes": ds.classes,
                "counts": ds.manifest["counts"],
                "data_dir": data_dir,
            },
            "settings": {
                **settings.__dict__,
                "starting_points": list(settings.starting_points),
                "resources": resources,
                "max_concurrent": a.max_concurrent,
                "smoke_test": a.smoke_test,
            },
            "hyperparameters": describe_hyperparameters(space),
            "optuna_storage": redact(optuna_storage_url(a.optuna_storage, study_dir)),
        }
        if a.resume:  # keep what the first run recorded; note when it was resumed
            first = read_json(st.join(study_dir, STUDY_JSON))
            meta = {
                **first,
                "resumed": [*first.get("resumed", []), meta["started"]],
                "finished": None,
            }
        write_json(meta, st.join(study_dir, STUDY_JSON))
        # decode once, in the driver, before fit(): every trial gets this same object
        data = TrialData(
            train=load_split(ds, "train", settings.image_size),
            val=load_split(ds, "val", settings.image_size),
            classes=ds.classes,
        )
        data = confirm.tuning_data(data, ds, settings, a.seed)  # cv_folds: train+val in folds
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
        )
        tuner = restore_tuner(**kwargs) if a.resume else build_tuner(**kwargs)
        tuner.fit()
        meta["tuning_finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        evaluate_best(study_dir, data_dir, ds.name, settings, resources)
        plan, rule = confirm.plan_of(a), ds.manifest["split_rule"]
        confirm.run(study_dir, data_dir, ds.name, settings, resources, plan, a.seed, rule)
        meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        meta["wall_s"] = time.time() - t0
        write_json(meta, st.join(study_dir, STUDY_JSON))
    finally:
        push_optuna_db(study_dir)  # SQLite cannot live on s3://: upload this run's copy
        ray.shutdown()
    print_leaderboard(study_dir, {"metric": settings.metric, "mode": settings.mode})
    if not a.no_report:
        try:
            from study.report import build_report

            out = build_report(study_dir, str(Path(a.reports) / name))
            print(f"report: {out}")
        except ImportError as e:  # the report is optional for a run; say why it is missing
            print(f"report not written ({e})", file=sys.stderr)
    return 0


def evaluate_best(study_dir: str, data_dir: str, dataset: str, settings, resources) -> None:
    """Test-split evaluation of the best `top_k` trials by validation; the only test-split read."""
    import ray

    from study.evaluate import evaluate_on_test, select_top

    trials = read_table(study_dir, TRIALS)
    if trials is None or trials.empty:
        return
    top = select_top(trials, settings.top_k, {"metric": settings.metric, "mode": settings.mode})
    if not top:
        return
    task = ray.remote(evaluate_on_test).options(
        num_cpus=resources["cpu"], num_gpus=resources["gpu"]
    )
    out = ray.get(task.remote(study_dir, data_dir, dataset, top, settings.image_size))
    for tid, m in out["metrics"].items():
        for col in ("test_acc", "test_macro_f1", "test_acc_ci_low", "test_acc_ci_high"):
            trials.loc[trials["trial_id"] == tid, col] = m[col]
    write_parquet(trials, st.join(study_dir, TRIALS))
    write_parquet(out["predictions"], st.join(study_dir, PREDICTIONS))
    if not out["gradcam"].empty:
        write_parquet(out["gradcam"], st.join(study_dir, GRADCAM))
    write_json(
        {tid: {k: m[k] for k in ("per_class", "confusion")} for tid, m in out["metrics"].items()},
        st.join(study_dir, "test_metrics.json"),
    )


def print_leaderboard(study_dir: str, settings: dict[str, Any], n: int = 10) -> None:
    trials = read_table(study_dir, TRIALS)
    if trials is None:
        print("no trial reported a result")
        return
    cols = [
        "trial_id",
        "model",
        "status",
        "epochs",
        "val_acc_avg",
        "val_acc_max",
        "test_acc",
        "test_acc_ci_low",
        "test_acc_ci_high",
        "params",
        "epoch_s_mean",
    ]
    column, larger = rank_column(settings)  # the report's ranking; errored trials last
    show = cols if column in cols else [*cols, column]
    top = trials.sort_values(column, ascending=not larger)[show].head(n)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(
            f"\nleaderboard (by {column}, validation; test acc only for the best trials, on the "
            f"test split, 95% CI) - {study_dir}"
        )
        print(top.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    sys.exit(main())
