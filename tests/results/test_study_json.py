"""study.json has one owner: the record a run writes and the one check of a record read back, with
what guessing scores on an imbalanced val split."""

from __future__ import annotations

import json

import pytest

from study.results.study_json import RecordError, check_record, new_record, resumed_record
from study.run.preflight import UsageError
from study.spaces.settings import SpaceSettings

SETTINGS = SpaceSettings(dataset="toon", description="unit", max_epochs=4, grace_period=1)


# ----------------------------------------------------------------- study.json


class _Dataset:
    name, version, classes = "toon", "v1", ["a", "b"]
    manifest = {
        "split_rule": "stratified",
        "counts": {"train": 4, "val": 10},
        "class_counts": {"a": {"train": 2, "val": 8}, "b": {"train": 2, "val": 2}},
    }


def _record() -> dict:
    return new_record(
        name="x",
        space="demo",
        space_ref="demo",
        settings=SETTINGS,
        seed=0,
        argv=["--space", "demo", "--data-dir", "s3://KEY:SECRET@b/d"],
        dataset=_Dataset(),
        data_dir="s3://KEY:SECRET@b/d",
        run={"resources": {"cpu": 1.0, "gpu": 0.0}, "max_concurrent": None, "smoke_test": False},
        hyperparameters={"lr": {"kind": "float", "low": 0.1, "high": 1.0, "role": "nuisance"}},
        optuna_storage="sqlite:///x/optuna.db",
        set_values={},
        code={"git_commit": None, "versions": {}},
        space_sha256="ab" * 32,
    )


def test_study_json_is_built_and_checked_by_one_module() -> None:
    meta = _record()
    assert check_record(json.loads(json.dumps(meta)), "study.json") == meta
    assert "SECRET" not in json.dumps(meta)  # never a credential
    assert meta["settings"]["max_epochs"] == 4 and meta["settings"]["smoke_test"] is False
    again = resumed_record(resumed_record(meta, "t1"), "t2")
    assert again["resumed"] == ["t1", "t2"] and again["started"] == meta["started"]
    bad = {**meta, "hyperparameters": {"lr": {"kind": "float", "role": "main"}}}
    with pytest.raises(RecordError, match=r"^s/study.json: hyperparameters.lr.role: expected"):
        check_record(bad, "s/study.json")
    with pytest.raises(RecordError, match="settings.grace_period must be a positive integer"):
        check_record({**meta, "settings": {"grace_period": 0}}, "s/study.json")


def test_resume_and_report_reject_the_same_bad_record(tmp_path) -> None:
    from study.report import ReportInputError, load_study
    from study.run.preflight import study_record

    study = tmp_path / "s" / "x"
    study.mkdir(parents=True)
    meta = _record()
    meta["hyperparameters"]["lr"]["kind"] = "number"
    (study / "study.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="hyperparameters.lr.kind: expected one of") as resume:
        study_record(str(tmp_path / "s"), "x", True)
    with pytest.raises(ReportInputError) as report:
        load_study(str(study))
    assert str(resume.value) == str(report.value)


def test_the_record_carries_what_guessing_scores_on_an_imbalanced_val_split() -> None:
    """study.json keeps the per-class counts, so the report's "at chance" verdict compares with
    the majority class (0.8 here), not with 1 / classes (0.5)."""
    from study.report.leaderboard import baseline

    base = baseline(_record())
    assert base is not None and base.p0 == pytest.approx(0.8)


def test_the_record_holds_the_space_files_hash_and_older_records_pass() -> None:
    """--resume compares space_sha256 with the file (study.run.preflight); studies begun before
    it was recorded have none and are still read; a malformed one names the field."""
    meta = _record()
    assert check_record(meta, "study.json")["space_sha256"] == "ab" * 32
    old = {k: v for k, v in _record().items() if k != "space_sha256"}
    assert check_record(old, "study.json") == old
    with pytest.raises(RecordError, match=r"^s/study.json: space_sha256 must be 64 hex digits"):
        check_record({**meta, "space_sha256": "abc"}, "s/study.json")
