"""A study's lifecycle tells the truth (issue #27): SIGINT or SIGTERM in each phase of a real run
stops it with exit 128 + the signal, study.json says `interrupted` (when, why), no test split is
read after the signal, the exact --resume command is printed, and no finished trial or epoch row
is lost; a resume then finishes the study without duplicating a row.

The driver waits before a named phase when STUDY_FAULT_PAUSE names it (study.run.lifecycle), so
each row signals a real study at a known point; the tuning row signals a trial mid-run."""

from __future__ import annotations

import signal

import pytest
from conftest import STUDY_TEST_TIMEOUT_S
from study_process import record, rows, signal_at, start

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


@pytest.mark.slow
def test_a_signal_before_the_study_is_written_offers_no_resume(tiny_toon, tmp_path) -> None:
    """Nothing recorded yet: no study.json, so no --resume command to print."""
    proc = start(tmp_path, tiny_toon, pause="starting Ray")
    out, err = signal_at(proc, "-- paused before starting Ray", [signal.SIGINT])
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: SIGINT during starting Ray; the study had not started" in err
    assert "resume with" not in out and "Traceback" not in err
    assert not (tmp_path / "s" / "x" / "study.json").exists()
