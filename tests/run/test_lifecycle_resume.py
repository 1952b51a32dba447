"""Resume after Ctrl-C during tuning, a second Ctrl-C, and a run whose trials all failed
(issue #27; the phases one by one: test_lifecycle.py)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import REPO, STUDY_TEST_TIMEOUT_S, STUDY_TIMEOUT_S
from study_process import record, rows, signal_at, start


@pytest.mark.slow
@pytest.mark.timeout(STUDY_TEST_TIMEOUT_S)
def test_sigint_during_tuning_keeps_every_row_and_resume_finishes_without_duplicates(
    tiny_toon, tmp_path
) -> None:
    """Ctrl-C while a trial trains: Tune stops and saves, the driver reads no test split; the
    resume runs what is left and the tables hold each epoch once."""
    proc = start(tmp_path, tiny_toon, epochs=4, trials=2, fault="sleep=0.6")
    out, err = signal_at(proc, "] epoch 1:", [signal.SIGINT])
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: SIGINT during tuning" in err and "Traceback" not in err, err[-2000:]
    assert record(tmp_path)["status"] == "interrupted"
    assert not (tmp_path / "s" / "x" / "predictions.parquet").exists()
    before = rows(tmp_path, "epochs.parquet")
    assert len(before) >= 1
    resume = out.strip().splitlines()[-1].removeprefix("resume with: ").split()
    assert resume[:4] == ["python", "-m", "study.run", "--resume"]
    done = subprocess.run(
        [sys.executable, *resume[1:], "--no-report"],
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=STUDY_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    meta = record(tmp_path)
    assert meta["status"] == "finished" and len(meta["resumed"]) == 1
    epochs = rows(tmp_path, "epochs.parquet")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    kept = before.merge(epochs, on=["trial_id", "epoch"], suffixes=("", "_after"))
    assert len(kept) == len(before)  # no epoch that finished before the signal was lost
    assert (kept["val_acc"] == kept["val_acc_after"]).all()
    assert (tmp_path / "s" / "x" / "predictions.parquet").exists()


@pytest.mark.slow
def test_a_second_signal_ends_at_once_without_a_traceback(tiny_toon, tmp_path) -> None:
    proc = start(tmp_path, tiny_toon, pause="decoding")
    _, err = signal_at(proc, "-- paused before decoding", [signal.SIGINT, signal.SIGINT])
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_a_run_whose_trials_all_failed_is_failed(tiny_toon, tmp_path) -> None:
    proc = start(tmp_path, tiny_toon, fault="oom@1")
    out, err = proc.communicate(timeout=STUDY_TIMEOUT_S)
    assert proc.returncode == 1, err[-2000:]
    meta = record(tmp_path)
    assert meta["status"] == "failed" and "no trial finished" in meta["status_reason"]
    assert err.strip().splitlines()[-1].startswith("error: no trial finished")
