"""A study pins its data set (issue #27 item 4): after `prepare --overwrite` with another seed,
no read after tuning (test split, confirmation, refit, ensembles) uses the new splits; the run is
refused in one line, and study.json says it failed and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tree_snapshot
from report_fixture import make_study

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
