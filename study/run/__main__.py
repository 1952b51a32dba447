"""Run one hyperparameter study (Ray Tune + Optuna + ASHA), locally or on a Ray cluster.

Everything that can be wrong with the command line is checked before Ray starts.
`study run --space NAME` is `python -m study.run --space NAME`.
"""

from __future__ import annotations

import argparse
import sys

from study import console
from study import storage as st
from study.evaluation import confirm_options
from study.heavy_imports import gc_paused
from study.run.lifecycle import Interrupted, Lifecycle, signals_stop
from study.run.overrides import settings_types
from study.run.request import Request


def parse_args(argv: list[str] | None, prog: str | None = None) -> Request:
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
        "(postgresql+psycopg://...) or journal:///ABSOLUTE/PATH.log (default: SQLite beside the "
        "results)",
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
    p.add_argument(
        "--callback",
        action="append",
        default=[],
        choices=("mlflow", "wandb"),  # study.tuning.trackers.TRACKERS (that imports Ray)
        help="also log every trial to an experiment tracker with Ray Tune's own callback: mlflow "
        "(MLFLOW_TRACKING_URI, else STUDY/mlflow.db) or wandb (needs `wandb login`); repeatable",
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
    return Request.from_args(p.parse_args(argv), sys.argv[1:] if argv is None else argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    a = parse_args(argv, prog)
    console.set_level(
        console.QUIET if a.quiet else console.VERBOSE if a.verbose else console.NORMAL
    )
    if a.list:
        from study.spaces.loader import list_spaces, load_space

        for name in list_spaces():
            print(load_space(name).summary)
        return 0
    if any(item.strip() == "help" for item in a.set):
        print("--set KEY=VALUE keys (SpaceSettings fields) and their types:")
        for key, kind in settings_types().items():
            print(f"  {key:18s} {kind}")
        return 0
    console.phase("checking the command, the space (every choice builds its model) and the data")
    # the driver brings torch, Ray, pandas and Optuna: imported only after `--help` and `--list`,
    # with the garbage collector paused (study.heavy_imports says why)
    with gc_paused():
        from study.run.driver import prepare, run_study

    lifecycle = Lifecycle()
    with signals_stop(lifecycle):
        try:
            plan = prepare(a)
        except (ValueError, OSError) as e:  # UsageError, NotPreparedError, a bad space or setting
            print(f"error: {st.redact(str(e))}", file=sys.stderr)  # never a URI's credentials
            return 2
        except Interrupted as stop:
            print(f"interrupted: {stop}; the study had not started", file=sys.stderr)
            return stop.exit_code
    return run_study(plan, lifecycle)


if __name__ == "__main__":
    from study.cli import leaving

    sys.exit(leaving(main()))
