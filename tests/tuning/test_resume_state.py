"""Resume restores or refuses (issue #27 items 1 and 5): a copied or renamed study resumes in its
own folder and leaves the original untouched; a truncated or missing state file of Ray's is
refused in one line naming it, before Ray starts, instead of the study silently starting over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import study_cli, tree_snapshot

from study.run import __main__ as run


def copy_of(study, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / "s2" / name
    shutil.copytree(study.dir, target)
    return target


def resume(tmp_path: Path, name: str = "copy") -> list[str]:
    return ["--resume", "--name", name, "--storage", str(tmp_path / "s2"), "--no-report"]


def test_a_copied_study_resumes_in_its_own_folder(asha_study, tmp_path) -> None:
    copy = copy_of(asha_study, tmp_path)
    original = tree_snapshot(asha_study.dir)
    copied = (copy / "predictions.parquet").stat().st_mtime_ns
    r = study_cli(*resume(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert tree_snapshot(asha_study.dir) == original  # nothing written into the original
    meta = json.loads((copy / "study.json").read_text())
    assert meta["status"] == "finished" and len(meta.get("resumed", [])) == 1
    # the resume scored the test split again, and wrote it here
    assert (copy / "predictions.parquet").stat().st_mtime_ns > copied


@pytest.mark.parametrize(
    "state", ["experiment_state", "search_gen_state", "searcher-state", "tuner.pkl"]
)
def test_a_truncated_state_file_is_refused_before_ray_naming_it(
    state, asha_study, tmp_path, monkeypatch, capsys
) -> None:
    copy = copy_of(asha_study, tmp_path)
    path = sorted(p for p in copy.iterdir() if p.name.startswith(state))[-1]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = tree_snapshot(copy)
    started = []
    monkeypatch.setattr("ray.init", lambda **kw: started.append(kw))
    assert run.main(resume(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "start a new study" in err, err
    assert started == [] and tree_snapshot(copy) == before


def test_a_study_without_its_tuner_but_with_trials_is_refused(asha_study, tmp_path, capsys) -> None:
    copy = copy_of(asha_study, tmp_path)
    (copy / "tuner.pkl").unlink()
    assert run.main(resume(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "tuner.pkl is missing" in err and f"holds {len(asha_study.trials)} trial" in err, err
