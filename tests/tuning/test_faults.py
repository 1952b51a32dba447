"""Trustworthy studies under faults: Optuna hears the truth, resumes keep ASHA's state, and a NaN,
an OOM, a killed worker or a corrupt checkpoint costs one trial (or nothing), never the study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import REPO, STUDY_TIMEOUT_S

pytestmark = pytest.mark.study


def test_asha_stopped_trials_are_pruned_in_optuna(asha_study) -> None:
    """States and intermediate values in optuna.db match trials.parquet / epochs.parquet."""
    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{asha_study.dir}/optuna.db")
    by_ray = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    trials = asha_study.trials.set_index("trial_id")
    assert set(by_ray) == set(trials.index)
    expected = {
        "stopped": optuna.trial.TrialState.PRUNED,
        "finished": optuna.trial.TrialState.COMPLETE,
    }
    for tid, ot in by_ray.items():
        assert ot.state == expected[trials.loc[tid, "status"]], tid
        e = asha_study.epochs[asha_study.epochs["trial_id"] == tid].sort_values("epoch")
        assert ot.intermediate_values == dict(zip(e["epoch"], e["val_acc"], strict=True))
        if ot.state == optuna.trial.TrialState.COMPLETE:
            assert ot.value == pytest.approx(e["val_acc"].max())
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)


def test_trials_reuse_their_worker_processes(asha_study) -> None:
    """8 trials, 2 at a time: a worker that ends a trial runs a next one (reuse_actors), so torch
    is imported by a few worker processes, not by one new process per trial."""
    pids = {
        tid: {r["pid"] for r in _results(asha_study.dir / tid)}
        for tid in asha_study.trials["trial_id"]
    }
    assert all(len(p) == 1 for p in pids.values()), pids  # no trial moved (none failed)
    assert len(set().union(*pids.values())) < len(pids), pids


FAULT_SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="faults", max_epochs=3, num_samples=4,
                         image_size=32, sampler="random", scheduler="fifo", top_k=1)
FAULTS = ["nan@2", "oom@1", "crash_corrupt@2,oom_above@16", "sleep=0.15"]
def space(trial):
    return {"model": "vanilla_cnn", "width": 8, "depth": 3, "head_dense": [], "lr": 1e-3,
            "batch_size": 32, "fault": FAULTS[trial.number % 4]}
"""


def _results(trial_dir: Path) -> list[dict]:
    f = trial_dir / "result.json"
    return (
        [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if f.exists()
        else []
    )


@pytest.mark.slow  # a fault row of its own (45-50 s): CI runs it after the README's command
@pytest.mark.timeout(STUDY_TIMEOUT_S + 60)  # the study's own limit, then its checks
def test_nan_oom_corrupt_checkpoint_and_killed_worker(toon_dir, tmp_path, shared_ray) -> None:
    (tmp_path / "faults.py").write_text(FAULT_SPACE)
    storage = tmp_path / "s"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "study.run",
            "--space",
            str(tmp_path / "faults.py"),
            "--data-dir",
            str(toon_dir),
            "--storage",
            str(storage),
            "--name",
            "f",
            "--no-report",
        ],
        cwd=REPO,
        # Ray uploads a trial's result.json (read below for its worker's pid) with its experiment
        # state, which it now saves at its own pace: here at every step, to see epoch 1 in time
        # (on the test process's Ray head: the worker killed is one of its workers)
        env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0", **shared_ray},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = None
    deadline = time.monotonic() + STUDY_TIMEOUT_S
    try:
        # kill the slow trial's worker (by its pid) in the middle of its second epoch
        while proc.poll() is None and killed is None and time.monotonic() < deadline:
            for trial_dir in (storage / "f").glob("*/"):
                res = _results(trial_dir)
                if (
                    res
                    and res[-1].get("config", {}).get("fault") == "sleep=0.15"
                    and res[-1]["epoch"] == 1
                ):
                    killed = (trial_dir.name, res[-1]["pid"])
                    time.sleep(1.0)
                    os.kill(killed[1], signal.SIGKILL)
                    break
            time.sleep(0.2)
        out, _ = proc.communicate(timeout=max(10, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert killed is not None, "the slow trial never reported its first epoch"
    sd = storage / "f"
    trials = pd.read_parquet(sd / "trials.parquet")
    epochs = pd.read_parquet(sd / "epochs.parquet")
    by_fault = trials.set_index("config/fault")
    assert len(trials) == 4 and not epochs.duplicated(["trial_id", "epoch"]).any()

    nan = by_fault.loc["nan@2"]
    assert nan["status"] == "diverged" and "nan" in nan["status_reason"].lower()
    oom = by_fault.loc["oom@1"]
    assert oom["status"] == "errored" and "out of memory" in oom["status_reason"]
    assert "even with micro-batches of 2" in oom["status_reason"]  # halved down to the floor
    corrupt = by_fault.loc["crash_corrupt@2,oom_above@16"]
    assert corrupt["status"] == "finished" and corrupt["epochs"] == 3
    # a card that fits 16 images: batch 32 ran as micro-batches of 16, in every attempt
    assert "micro-batches of 16" in corrupt["status_reason"]
    fitted = epochs[epochs["trial_id"] == corrupt["trial_id"]]
    assert fitted["micro_batch"].tolist() == [16, 16, 16]
    assert "checkpoint_000001" in corrupt["status_reason"]  # the corrupt one, named by path
    assert "unreadable" in corrupt["status_reason"]
    assert "(epoch 1)" in corrupt["status_reason"]  # restarted from the previous good one
    slow = by_fault.loc["sleep=0.15"]
    assert slow["status"] == "finished" and slow["epochs"] == 3
    assert "resumed from checkpoint" in slow["status_reason"]
    slow_epochs = epochs[epochs["trial_id"] == killed[0]]["epoch"].tolist()
    assert sorted(slow_epochs) == [1, 2, 3]

    study = optuna.load_study(study_name="f", storage=f"sqlite:///{sd}/optuna.db")
    ids = dict(zip(trials["trial_id"], trials["config/fault"], strict=True))
    states = {ids[t.user_attrs["ray_trial_id"]]: t.state for t in study.trials}
    assert states["nan@2"] == optuna.trial.TrialState.FAIL
    assert states["oom@1"] == optuna.trial.TrialState.FAIL
    assert states["crash_corrupt@2,oom_above@16"] == optuna.trial.TrialState.COMPLETE


RESUME_SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="resume", max_epochs=4, grace_period=1,
                         reduction_factor=2, num_samples=6, image_size=32, top_k=1)
def space(trial):
    return {"model": "vanilla_cnn", "width": 8, "depth": 3, "head_dense": [], "batch_size": 64,
            "lr": trial.suggest_float("lr", 1e-5, 3e-2, log=True), "fault": "sleep=0.05"}
"""


def _ended(study_dir: Path) -> int:
    try:
        trials = pd.read_parquet(study_dir / "trials.parquet")
    except Exception:  # not written yet, or being replaced right now
        return 0
    return int(trials["status"].isin(["finished", "stopped"]).sum())


def _running_with_an_epoch(study_dir: Path) -> bool:
    """A trial past its first rung that has not ended (Ray's own per-trial result.json)."""
    try:
        ended = set(
            pd.read_parquet(study_dir / "trials.parquet").query(
                "status in ['finished', 'stopped']"
            )["trial_id"]
        )
    except Exception:
        return False
    return any(len(_results(d)) >= 2 and d.name not in ended for d in study_dir.glob("*/"))


def _rungs_by_seed(study_dir: Path) -> dict[str, dict[int, float]]:
    """ASHA's rung records with trials named by their seed (trial ids differ between runs)."""
    seeds = pd.read_parquet(study_dir / "trials.parquet").set_index("trial_id")["seed"]
    rungs = pd.read_parquet(study_dir / "asha_rungs.parquet")
    return {
        int(m): {int(seeds[t]): v for t, v in zip(g["trial_id"], g["value"], strict=True)}
        for m, g in rungs.groupby("milestone")
    }


# the three studies below share one budget: each waits at most what is left of it, so a slow
# machine fails the test with the step that ran out (TimeoutExpired or an assert), never hangs
RESUME_BUDGET_S = 540


def _left(deadline: float) -> float:
    return max(1.0, deadline - time.monotonic())


@pytest.mark.slow  # three studies (45-55 s): CI runs it after the README's command
@pytest.mark.timeout(RESUME_BUDGET_S + 60)
def test_resume_after_driver_sigkill_matches_an_uninterrupted_run(
    toon_dir, tmp_path, shared_ray
) -> None:
    deadline = time.monotonic() + RESUME_BUDGET_S
    (tmp_path / "resume.py").write_text(RESUME_SPACE)
    common = [
        "--space",
        str(tmp_path / "resume.py"),
        "--data-dir",
        str(toon_dir),
        "--storage",
        str(tmp_path / "s"),
        "--max-concurrent",
        "1",
        "--no-report",
    ]

    # every study of this test joins the test process's Ray head: the same decisions are
    # expected wherever Ray runs, and each study skips starting its own
    env = {**os.environ, **shared_ray}

    def study(*args: str, **popen) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "study.run", *common, *args]
        return subprocess.Popen(cmd, cwd=REPO, text=True, start_new_session=True, env=env, **popen)

    # the uninterrupted run beside the one to be cut (one trial at a time each: the two share
    # the 2 cores as one study of two concurrent trials would); its log goes to a file, read
    # after it ends (a pipe that nobody reads could fill and stall it)
    log = (tmp_path / "full.log").open("w+")
    full = study("--name", "full", stdout=log, stderr=subprocess.STDOUT)
    # the same study, its driver killed (SIGKILL) once two trials have ended, in the middle of
    # the next trial (after its first epoch: not in the instant a new trial is being sampled)
    proc = study("--name", "cut", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cut = tmp_path / "s" / "cut"
    try:
        while proc.poll() is None:
            if _ended(cut) >= 2 and _running_with_an_epoch(cut):
                break
            assert time.monotonic() < deadline, "no trial to cut within the test's budget"
            time.sleep(0.1)
        assert proc.poll() is None, "the study ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        full.wait(timeout=_left(deadline))
    finally:
        # each driver in its own session (with any process it started): end them too
        for p in (proc, full):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.seek(0)
        full_log = log.read()
        log.close()
    assert full.returncode == 0, full_log[-3000:]
    before = pd.read_parquet(cut / "trials.parquet")
    assert len(before) < 6
    t0 = time.time()
    resumed = subprocess.run(
        [sys.executable, "-m", "study.run", *common, "--name", "cut", "--resume"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=_left(deadline),
    )
    resume_s = time.time() - t0
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = pd.read_parquet(tmp_path / "s" / "full" / "trials.parquet").set_index("seed")
    b = pd.read_parquet(cut / "trials.parquet").set_index("seed")
    assert b.index.is_unique and len(b) == 6  # every trial exactly once
    eb = pd.read_parquet(cut / "epochs.parquet")
    assert not eb.duplicated(["trial_id", "epoch"]).any()  # no epoch counted twice
    for tid in before[before["status"].isin(["finished", "stopped"])]["trial_id"]:
        assert tid in set(b["trial_id"])  # finished trials kept, with their ids
    # same decisions as without the interruption
    assert b.sort_index()["status"].tolist() == a.sort_index()["status"].tolist()
    assert b.sort_index()["epochs"].tolist() == a.sort_index()["epochs"].tolist()
    assert _rungs_by_seed(cut) == _rungs_by_seed(tmp_path / "s" / "full")
    print(f"resume took {resume_s:.1f} s")
