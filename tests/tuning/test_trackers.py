"""`--callback mlflow|wandb`: Ray Tune's own logger callbacks beside the study's tables. A smoke
study logs one MLflow run per trial into the study folder; a tracker that cannot work is one line
before Ray starts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import study_cli, tree_snapshot

from study.run import __main__ as run
from study.tuning.trackers import TRACKERS, check_trackers, mlflow_tracking_uri


def test_the_cli_offers_each_tracker() -> None:
    assert (
        run.parse_args(["--space", "demo", "--callback", "mlflow", "--callback", "wandb"]).callback
        == TRACKERS
    )
    with pytest.raises(SystemExit):
        run.parse_args(["--space", "demo", "--callback", "tensorboard"])  # always on, no option


def test_mlflow_smoke_study_logs_one_run_per_trial_in_the_study_folder(
    tiny_toon: Path, tmp_path: Path, monkeypatch
) -> None:
    """The issue's command, quiet: the summary only (no phase lines, no Ray token banner), and
    STUDY/mlruns holds the study's experiment with one finished run per trial, whose metric
    history has one point per epoch the trial reported."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "MLFLOW_TRACKING_URI")}
    # a home of its own: Ray makes its token there (a new local cluster, RAY_AUTH_MODE unset, is
    # when Ray prints its token notices)
    env["HOME"] = str(tmp_path / "home")
    r = study_cli(
        *("--space", "demo", "--smoke-test", "--callback", "mlflow", "-q"),
        *("--data-dir", str(tiny_toon), "--storage", str(tmp_path / "s"), "--name", "ml"),
        "--no-report",
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "home" / ".ray" / "auth_token").exists()  # Ray did make a token
    talk = r.stdout + r.stderr
    assert "Token authentication" not in talk and "authentication token" not in talk, talk
    assert r.stdout.lstrip().startswith("leaderboard"), r.stdout[:500]
    assert "\n-- " not in r.stdout  # no phase lines under -q

    sd = tmp_path / "s" / "ml"
    trials = pd.read_parquet(sd / "trials.parquet")
    epochs = pd.read_parquet(sd / "epochs.parquet").groupby("trial_id").size().to_dict()
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.x: reading it needs it too
    client = MlflowClient(mlflow_tracking_uri(str(sd)))
    experiment = client.get_experiment_by_name("ml")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(trials) == 2
    by_trial = {
        tid: [r for r in runs if tid in r.data.tags["trial_name"]] for tid in trials["trial_id"]
    }
    assert all(len(found) == 1 for found in by_trial.values()), by_trial
    for tid, (mlrun,) in by_trial.items():
        assert mlrun.info.status == "FINISHED" and mlrun.data.tags["study"] == "ml"
        history = client.get_metric_history(mlrun.info.run_id, "val_acc")
        assert len(history) == epochs[tid]
        assert mlrun.data.params["model"] == "vanilla_cnn"  # the trial's config
    assert not list(Path(tmp_path).glob("mlruns")) and not (Path.cwd() / "mlruns").exists()


@pytest.mark.parametrize("tracker", TRACKERS)
def test_a_tracker_not_installed_is_one_line_before_ray_starts(
    tracker: str, tiny_toon: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, tracker, None)  # as if not installed
    before = tree_snapshot(tmp_path)
    rc = run.main(
        [
            *("--space", "demo", "--smoke-test", "--callback", tracker),
            *("--data-dir", str(tiny_toon), "--storage", str(tmp_path / "s"), "--name", "x"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.strip() == f"error: --callback {tracker}: {tracker} is not installed " + (
        "(pip install -e '.[mlflow]')" if tracker == "mlflow" else "(pip install wandb)"
    )
    assert tree_snapshot(tmp_path) == before  # nothing written, Ray never started


def test_mlflow_needs_a_tracking_server_for_a_study_in_a_bucket(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ValueError, match="set MLFLOW_TRACKING_URI to a tracking server"):
        check_trackers(["mlflow"], "s3://bucket/studies/x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    check_trackers(["mlflow"], "s3://bucket/studies/x")
    assert mlflow_tracking_uri("s3://bucket/studies/x") is None  # MLflow reads the variable


def test_wandb_without_a_login_is_refused(monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("wandb", reason="wandb is not a dependency; the check is Ray's own")
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_SETUP_API_KEY_HOOK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: never logged in
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb"))
    with pytest.raises(ValueError, match="not logged in to W&B"):
        check_trackers(["wandb"], str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    check_trackers(["wandb"], str(tmp_path))
