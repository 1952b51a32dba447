"""Issue #27 item 10: what study.json records is what ran, and what cannot run is refused before
Ray starts: `--set smoke=...` is the smoke test's shrink (it was recorded while the space's own
ran), an empty $STUDY_DATA_DIR is no data folder, and `--resume` refuses a space file edited since
the study began (its hash, recorded when the study started). Ray is stubbed: each run stops at
its tuner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import ray
from conftest import tree_snapshot
from test_run_inputs import record_study

from study.data.__main__ import main as data_main
from study.run import __main__ as run
from study.run import driver
from study.spaces.loader import space_file, space_sha256


class _Stop(Exception):
    pass


def _run_to_the_tuner(monkeypatch, args: list[str]) -> dict[str, Any]:
    """run.main up to build_tuner (Ray stubbed); the tuner's arguments."""
    monkeypatch.setattr(ray, "init", lambda **_: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    seen: dict[str, Any] = {}

    def stop(**kwargs: Any) -> None:
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr("study.run.driver.build_tuner", stop)
    with pytest.raises(_Stop):
        run.main(args)
    return seen


@pytest.fixture
def no_ray(monkeypatch) -> None:
    """A refusal that regressed would start a real study: fail instead."""

    def refuse(**_: Any) -> None:
        raise AssertionError("Ray started")

    monkeypatch.setattr(ray, "init", refuse)


def _base(tmp_path: Path, data: Path) -> list[str]:
    return ["--data-dir", str(data), "--storage", str(tmp_path / "s"), "--name", "x",
            "--no-report"]  # fmt: skip


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------ --set smoke=...


def test_set_smoke_is_what_the_smoke_test_runs_records_and_resumes(
    tiny_toon, tmp_path, monkeypatch
) -> None:
    smoke = {"image_size": 48, "width": 4}
    args = ["--space", "demo", "--smoke-test", "--set", f"smoke={json.dumps(smoke)}"]
    seen = _run_to_the_tuner(monkeypatch, [*_base(tmp_path, tiny_toon), *args])
    assert seen["settings"].image_size == 48 and seen["constants"]["image_size"] == 48
    assert seen["space_fn"].overrides == {"width": 4}  # the space's own smoke has width 8
    meta = json.loads((tmp_path / "s" / "x" / "study.json").read_text())
    assert meta["settings"]["smoke"] == smoke and meta["settings"]["image_size"] == 48
    assert meta["set"] == {"smoke": smoke}
    # resumed, the study shrinks as its first run did: by the recorded smoke
    resumed: dict[str, Any] = {}
    monkeypatch.setattr(driver, "run_study", lambda study, *_: resumed.update(study=study) or 0)
    assert run.main([*_base(tmp_path, tiny_toon), "--resume"]) == 0
    assert resumed["study"].space_fn.overrides == {"width": 4}
    assert resumed["study"].settings.image_size == 48


@pytest.mark.parametrize(
    ("args", "words"),
    [
        # applied only by --smoke-test: without it, a recorded no-op
        (["--set", 'smoke={"width": 4}'], ['--set smoke={"width": 4}', "only with --smoke-test"]),
        # a key no config of the space holds would shrink nothing
        (["--smoke-test", "--set", 'smoke={"widht": 4}'], ["demo.py", "smoke 'widht'"]),
        # numbers no trial trains with, through the smoke overrides
        (["--smoke-test", "--set", 'smoke={"lr": Infinity}'], ["Infinity: expected a finite"]),
        (
            ["--smoke-test", "--set", 'smoke={"aug_strength": 2}'],
            ["demo.py", "config aug_strength=2: expected a value in [0, 1]"],
        ),
    ],
)
def test_a_set_smoke_that_would_not_run_as_recorded_is_one_line_before_ray(
    args, words, tiny_toon, tmp_path, capsys, no_ray
) -> None:
    before = tree_snapshot(tmp_path)
    assert run.main([*_base(tmp_path, tiny_toon), "--space", "demo", *args]) == 2
    line = _one_error(capsys)
    assert all(w in line for w in words), line
    assert not ray.is_initialized() and tree_snapshot(tmp_path) == before


# ------------------------------------------------------------------------ $STUDY_DATA_DIR


def test_an_empty_study_data_dir_is_refused_not_the_current_directory(
    tmp_path, monkeypatch, capsys, no_ray
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDY_DATA_DIR", "")
    before = tree_snapshot(tmp_path)
    assert run.main(["--space", "demo", "--smoke-test", "--no-report"]) == 2
    assert "STUDY_DATA_DIR is set but empty" in _one_error(capsys)
    assert data_main(["prepare", "toon", "--source", "tiny"]) == 2
    assert "STUDY_DATA_DIR is set but empty" in _one_error(capsys)
    assert tree_snapshot(tmp_path) == before and not ray.is_initialized()


# ------------------------------------------------------------------------ the space's hash


def _user_space(tmp_path: Path) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(space_file("demo").read_text())
    return path


def test_study_json_records_the_space_files_hash(tiny_toon, tmp_path, monkeypatch) -> None:
    path = _user_space(tmp_path)
    args = [*_base(tmp_path, tiny_toon), "--space", str(path), "--smoke-test"]
    _run_to_the_tuner(monkeypatch, args)
    meta = json.loads((tmp_path / "s" / "x" / "study.json").read_text())
    assert meta["space_sha256"] == space_sha256(str(path)) == space_sha256("demo")


def test_resume_refuses_a_space_file_changed_since_the_study_began(
    tiny_toon, tmp_path, monkeypatch, capsys
) -> None:
    """An edited space once crashed the resumed study mid-run; the file is not even imported."""
    path = _user_space(tmp_path)
    base = _base(tmp_path, tiny_toon)
    _run_to_the_tuner(monkeypatch, [*base, "--space", str(path), "--smoke-test"])
    monkeypatch.setattr(driver, "run_study", lambda study, *_: pytest.fail("the resume ran"))
    had = space_sha256(str(path))
    path.write_text(path.read_text() + "\nraise SystemExit('imported')\n")
    before = tree_snapshot(tmp_path)
    assert run.main([*base, "--resume"]) == 2
    line = _one_error(capsys)
    now = space_sha256(str(path))
    assert f"space file {path} changed since the study began" in line, line
    assert f"sha256 {had[:12]} recorded" in line and f"{now[:12]} now" in line, line
    assert tree_snapshot(tmp_path) == before and not ray.is_initialized()


def test_a_record_without_the_hash_resumes_with_a_note(tiny_toon, tmp_path, monkeypatch, capsys):
    """Studies begun before the hash was recorded resume as before."""
    meta = record_study(tmp_path / "s" / "x", tiny_toon, smoke=True)
    assert "space_sha256" not in meta
    monkeypatch.setattr(driver, "run_study", lambda study, *_: 0)
    assert run.main([*_base(tmp_path, tiny_toon), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "records no hash of its space file" in out and str(space_file("demo")) in out
