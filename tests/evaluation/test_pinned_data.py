"""A study pins its data set (issue #27 item 4): after `prepare --overwrite` with another seed,
no read after tuning (test split, confirmation, refit, ensembles) uses the new splits; the run is
refused in one line, and study.json says it failed and why."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import STUDY_TEST_TIMEOUT_S, STUDY_TIMEOUT_S, tree_snapshot
from report_fixture import make_study
from study_process import start

from study.data import load_split, open_dataset, prepare
from study.data.store import DataChangedError
from study.evaluation import confirm
from study.evaluation.confirm_options import Plan
from study.evaluation.test_split import evaluate_best
from study.spaces.settings import SpaceSettings


@pytest.fixture
def changed(tmp_path: Path):
    """A data set opened at one version, then prepared again with another seed."""
    d = tmp_path / "data"
    prepare("toon", source="tiny", data_dir=d, seed=0)
    ds = open_dataset(d, "toon")
    prepare("toon", source="tiny", data_dir=d, seed=1, overwrite=True)
    assert open_dataset(d, "toon").version != ds.version
    return ds


def test_every_read_of_a_split_checks_the_pinned_version(changed) -> None:
    with pytest.raises(DataChangedError, match=f"not version {changed.version}") as e:
        load_split(changed, "test", 32)
    assert "prepared again" in str(e.value) and "\n" not in str(e.value)


def test_test_split_and_confirmation_refuse_a_changed_data_set(changed, tmp_path) -> None:
    study_dir = str(make_study(tmp_path / "s"))
    settings = SpaceSettings(dataset="toon", description="pinned", top_k=1)
    cpu = {"cpu": 1.0, "gpu": 0.0}
    before = tree_snapshot(Path(study_dir))
    with pytest.raises(DataChangedError):
        evaluate_best(study_dir, changed, settings, cpu)
    assert tree_snapshot(Path(study_dir)) == before  # nothing scored, nothing written
    with pytest.raises(DataChangedError):
        confirm.run(study_dir, changed, settings, cpu, Plan(seeds=1), 0)


@pytest.mark.slow
@pytest.mark.timeout(STUDY_TEST_TIMEOUT_S)
def test_a_study_whose_data_set_is_prepared_again_is_refused_before_the_test_split(
    tmp_path, monkeypatch
) -> None:
    """The issue's case: prepare --overwrite with another seed while the study tunes."""
    data = tmp_path / "data"
    prepare("toon", source="tiny", data_dir=data, seed=0)
    go_on = tmp_path / "go-on"
    monkeypatch.setenv("STUDY_FAULT_CONTINUE", str(go_on))
    proc = start(tmp_path, data, pause="test evaluation")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "-- paused before test evaluation" in line:
            prepare("toon", source="tiny", data_dir=data, seed=1, overwrite=True)
            go_on.touch()
            break
    _, err = proc.communicate(timeout=STUDY_TIMEOUT_S)
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    assert proc.returncode == 1, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: data set toon in ") and "prepared again" in last, err[-2000:]
    meta = json.loads((tmp_path / "s" / "x" / "study.json").read_text())
    assert meta["status"] == "failed" and "prepared again" in meta["status_reason"]
    assert not (tmp_path / "s" / "x" / "predictions.parquet").exists()
