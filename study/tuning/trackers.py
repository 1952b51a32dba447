"""Experiment trackers beside the study's own tables: Ray Tune's MLflow and W&B logger callbacks,
attached with `--callback mlflow` / `--callback wandb` (repeatable). One tracker run per trial,
named by Ray after the trial, with its config as parameters and every reported result as metrics.

`check_trackers` runs before Ray starts (a missing package or login is one line, not a failure
inside Tune); `tracker_callbacks` builds the callbacks for the tuner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from ray import tune

from study import storage as st

TRACKERS = ("mlflow", "wandb")
# Without MLFLOW_TRACKING_URI the runs go to MLflow's file store in the study folder, STUDY/mlruns
# (`mlflow ui --backend-store-uri STUDY/mlruns`). Tune's driver logs every result of every trial
# through it, one metric at a time, inside its event loop, where the whole study waits: on the
# test machine an SQLite store took 1.9 s per result, the file store 0.14 s (benchmarks/results/
# mlflow_stores.txt). MLflow 3.x refuses the file store unless MLFLOW_ALLOW_FILE_STORE=true, which
# the driver sets for this default only.
MLFLOW_RUNS = "mlruns"
WANDB_PROJECT = "study"  # unless WANDB_PROJECT says otherwise; the study is the run group


def mlflow_tracking_uri(study_dir: str) -> str | None:
    """Where MLflow records a study's runs: MLFLOW_TRACKING_URI (a tracking server) when set
    (None: MLflow reads the variable itself), else the file store STUDY/mlruns."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return Path(st.join(study_dir, MLFLOW_RUNS)).as_uri()


def check_trackers(names: Sequence[str], study_dir: str) -> None:
    """Before Ray starts: each tracker's package is installed, and W&B has a login."""
    for name in dict.fromkeys(names):
        if name not in TRACKERS:
            raise ValueError(f"--callback {name}: expected one of {', '.join(TRACKERS)}")
        if find_spec(name) is None:
            extra = "pip install -e '.[mlflow]'" if name == "mlflow" else "pip install wandb"
            raise ValueError(f"--callback {name}: {name} is not installed ({extra})")
        if (
            name == "mlflow"
            and st.is_remote(study_dir)
            and not os.environ.get("MLFLOW_TRACKING_URI")
        ):
            raise ValueError(
                f"--callback mlflow: the default store, {MLFLOW_RUNS}/ in the study folder, "
                f"cannot live on {st.redact(study_dir)}: set MLFLOW_TRACKING_URI to a tracking "
                "server"
            )
        if name == "wandb":
            _check_wandb_login()


def _check_wandb_login() -> None:
    # Ray's own test of a W&B login (WANDB_API_KEY, `wandb login`, WANDB_MODE=offline), the one
    # its callback applies when the tuning starts
    from ray.air.integrations.wandb import _set_api_key

    try:
        _set_api_key()
    except ValueError as e:
        raise ValueError(
            "--callback wandb: not logged in to W&B (run `wandb login`, set WANDB_API_KEY, or "
            "WANDB_MODE=offline to keep the runs on this machine)"
        ) from e


def tracker_callbacks(names: Sequence[str], study_dir: str, study: str) -> list[tune.Callback]:
    """Ray Tune's logger callbacks for the trackers named, each once."""
    out: list[tune.Callback] = []
    for name in dict.fromkeys(names):
        if name == "mlflow":
            # imported here: Ray's module imports mlflow itself, a second of every driver's start
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            uri = mlflow_tracking_uri(study_dir)
            if uri is not None:  # the study's own file store (see MLFLOW_RUNS)
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            out.append(MLflowLoggerCallback(uri, experiment_name=study, tags={"study": study}))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            project = os.environ.get("WANDB_PROJECT", WANDB_PROJECT)
            out.append(WandbLoggerCallback(project=project, group=study))
    return out
