"""A real study started as a user starts it, to be signalled or changed at a known point: the
driver waits before the phase STUDY_FAULT_PAUSE names (study.run.lifecycle). Used by the
fault table (tests/run/test_fault_table.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import REPO, STUDY_TIMEOUT_S

SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="lifecycle", max_epochs={epochs},
                         grace_period={epochs}, num_samples={trials}, image_size=32, top_k=1)
def space(trial):
    return {{"model": "vanilla_cnn", "width": 4, "depth": 2, "head_dense": [], "batch_size": 16,
            "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True), "fault": {fault!r}}}
"""


def study_args(tmp: Path, data: Path, *extra: str, **space) -> list[str]:
    """The command line of study x in tmp/s, its space file (SPACE) written to tmp/space.py."""
    spec = {"epochs": 1, "trials": 1, "fault": ""} | space
    (tmp / "space.py").write_text(SPACE.format(**spec))
    return ["--space", str(tmp / "space.py"), "--data-dir", str(data), "--storage",
            str(tmp / "s"), "--name", "x", "--reports", str(tmp / "r"), *extra]  # fmt: skip


def start(
    tmp: Path, data: Path, *extra: str, pause: str = "", env: dict | None = None, **space
) -> subprocess.Popen:
    env = {**os.environ, "STUDY_FAULT_PAUSE": pause, "PYTHONUNBUFFERED": "1", **(env or {})}
    return popen_study(study_args(tmp, data, *extra, **space), env)


def popen_study(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`python -m study.run ARGS` in a fresh process, its output read as it comes."""
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
