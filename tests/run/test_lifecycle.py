"""A study's lifecycle tells the truth (issue #27): SIGINT or SIGTERM in each phase of a real run
stops it with exit 128 + the signal, study.json says `interrupted` (when, why), no test split is
read after the signal, the exact --resume command is printed, and no finished trial or epoch row
is lost; a resume then finishes the study without duplicating a row.

The driver waits before a named phase when STUDY_FAULT_PAUSE names it (study.run.lifecycle), so
each row signals a real study at a known point; the tuning row signals a trial mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, STUDY_TEST_TIMEOUT_S, STUDY_TIMEOUT_S

SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="lifecycle", max_epochs={epochs},
                         grace_period={epochs}, num_samples={trials}, image_size=32, top_k=1)
def space(trial):
    return {{"model": "vanilla_cnn", "width": 4, "depth": 2, "head_dense": [], "batch_size": 16,
            "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True), "fault": {fault!r}}}
"""


def start(tmp: Path, data: Path, *extra: str, pause: str = "", **space) -> subprocess.Popen:
    spec = {"epochs": 1, "trials": 1, "fault": ""} | space
    (tmp / "space.py").write_text(SPACE.format(**spec))
    env = {**os.environ, "STUDY_FAULT_PAUSE": pause, "PYTHONUNBUFFERED": "1"}
    args = ["--space", str(tmp / "space.py"), "--data-dir", str(data), "--storage",
            str(tmp / "s"), "--name", "x", "--reports", str(tmp / "r"), *extra]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "study.run", *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def signal_at(proc: subprocess.Popen, marker: str, signums: list[int]) -> tuple[str, str]:
    """Read stdout until `marker`, send the signals, then wait for the end; (stdout, stderr)."""
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            for s in signums:
                proc.send_signal(s)
            break
    out, err = proc.communicate(timeout=STUDY_TIMEOUT_S)
    return "".join(seen) + out, err


def record(tmp: Path) -> dict:
    return json.loads((tmp / "s" / "x" / "study.json").read_text())


def rows(tmp: Path, table: str) -> pd.DataFrame:
    from study.results.tables import read_table

    return read_table(str(tmp / "s" / "x"), table)


PHASES = [
    # (signal, the phase it stops, study options)
    (signal.SIGINT, "decoding", []),
    (signal.SIGTERM, "test evaluation", []),
    (signal.SIGINT, "confirmation", ["--confirm-seeds", "1"]),
    (signal.SIGTERM, "report", []),
]


@pytest.mark.slow
@pytest.mark.timeout(STUDY_TEST_TIMEOUT_S)
@pytest.mark.parametrize(("signum", "phase", "extra"), PHASES)
def test_a_signal_in_each_phase_stops_the_run_and_says_so(
    signum, phase, extra, tiny_toon, tmp_path
) -> None:
    proc = start(tmp_path, tiny_toon, *extra, pause=phase)
    out, err = signal_at(proc, f"-- paused before {phase}", [signum])
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err[-2000:]
    assert f"interrupted: {name} during {phase}" in err and "Traceback" not in err, err[-2000:]
    assert f"resume with: python -m study.run --resume --name x --storage {tmp_path / 's'}" in out
    meta = record(tmp_path)
    assert (meta["status"], meta["status_reason"]) == ("interrupted", f"{name} during {phase}")
    sd = tmp_path / "s" / "x"
    # the test split is read only by the phase the signal did not stop
    assert (sd / "predictions.parquet").exists() == (phase in ("confirmation", "report"))
    # the final report is not written (the live one, rewritten as trials finished, may be)
    assert not (sd / "confirm.parquet").exists() and "\nreport: " not in out
    trials = rows(tmp_path, "trials.parquet")
    if phase == "decoding":
        assert trials is None  # no trial started
    else:  # every trial that finished before the signal is kept
        assert list(trials["status"]) == ["finished"]
        assert len(rows(tmp_path, "epochs.parquet")) == 1
