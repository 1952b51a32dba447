"""Ray's saved state is restored as one whole save (study.tuning.ray_state): a driver killed while
Tune uploaded a save left files from two saves, and the resume hung on them."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest

from study.tuning.ray_state import (
    BUNDLE,
    SUPERSEDED,
    StateError,
    WholeSaves,
    check_saved_state,
    put_back_last_save,
    read_last_save,
)

OLD, NEW = "2026-12-01_10-00-00", "2026-12-03_10-00-00"


def _save(session: str, trials: list[str]) -> dict[str, bytes]:
    """The files of one save, as Tune names them (contents shaped like Tune's)."""
    return {
        f"experiment_state-{session}.json": json.dumps({"trial_data": trials}).encode(),
        f"search_gen_state-{session}.json": pickle.dumps({"counter": len(trials)}),
        f"searcher-state-{session}.pkl": pickle.dumps({"trials": trials}),
    }


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


class _Tune:
    """Stands for Tune's search algorithm: writes its files of a save, each to a temporary
    renamed into place, in the folder it is given."""

    given: list[str]

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        self.given.append(dirpath)
        for name, data in _save(session_str, ["a", "b"]).items():
            if not name.startswith("experiment_state"):  # (Tune's controller writes that one)
                (Path(dirpath) / f".tmp-{name}").write_bytes(data)
                (Path(dirpath) / f".tmp-{name}").rename(Path(dirpath) / name)


class _Saving(WholeSaves, _Tune):
    def __init__(self, study_dir: Path):
        self.study_dir = str(study_dir)
        self.given = []  # the folders it was given to write in, this instance's alone


def test_each_save_is_zipped_whole_with_only_its_own_session(tmp_path: Path) -> None:
    staging, study = tmp_path / "driver_artifacts", tmp_path / "study"
    staging.mkdir()
    study.mkdir()
    for name, data in _save(OLD, ["a"]).items():  # a previous run's files, synced down
        (staging / name).write_bytes(data)
    (staging / f"experiment_state-{NEW}.json").write_bytes(_save(NEW, ["a", "b"])[
        f"experiment_state-{NEW}.json"])  # fmt: skip
    saving = _Saving(study)
    saving.save_to_dir(str(staging), NEW)
    assert read_last_save(str(study)) == _save(NEW, ["a", "b"])
    # the search algorithm wrote (and renamed its temporaries) outside the folder Tune uploads;
    # its files arrived whole, and the private folder is gone
    assert saving.given and Path(saving.given[0]).parent == tmp_path
    assert not Path(saving.given[0]).exists()
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        {**_save(OLD, ["a"]), **_save(NEW, ["a", "b"])}
    )
    # written straight into the study folder (whole: no temporary left), not into what Tune uploads
    assert [p.name for p in study.iterdir()] == [BUNDLE] and not (staging / BUNDLE).exists()


def test_files_from_two_saves_are_put_back_as_the_last_whole_one(tmp_path: Path) -> None:
    """The hang's files: the experiment state of an older save beside a newer searcher state,
    and a newer run's experiment state that reached the folder without its zip."""
    last = _save(OLD, ["a", "b", "c"])
    _zip(tmp_path / BUNDLE, last)
    for name, data in _save(OLD, ["a", "b", "c"]).items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / f"experiment_state-{OLD}.json").write_bytes(_save(OLD, ["a"])[
        f"experiment_state-{OLD}.json"])  # fmt: skip
    newer = tmp_path / f"experiment_state-{NEW}.json"
    newer.write_text("{}")
    (tmp_path / "trials.parquet").write_bytes(b"not Ray's")

    changed = put_back_last_save(str(tmp_path))

    assert changed == [
        f"experiment_state-{OLD}.json",
        f"experiment_state-{NEW}.json (set aside as experiment_state-{NEW}.json{SUPERSEDED})",
    ]
    assert {n: (tmp_path / n).read_bytes() for n in last} == last
    assert not newer.exists() and Path(f"{newer}{SUPERSEDED}").read_text() == "{}"
    assert (tmp_path / "trials.parquet").read_bytes() == b"not Ray's"
    # a folder that already holds the last whole save is left as it is
    assert put_back_last_save(str(tmp_path)) == []


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "BadZipFile"),
        (lambda p: _zip(p, {"../experiment_state-x.json": b"{}"}), "is not a file of Tune's"),
        (lambda p: _zip(p, {f"search_gen_state-{OLD}.json": b"\x80"}), "ValueError"),
        (lambda p: _zip(p, {f"searcher-state-{OLD}.pkl": pickle.dumps(1)}), "no experiment state"),
    ],
    ids=["truncated", "climbing-name", "cut-pickle", "no-experiment-state"],
)
def test_an_unusable_zip_is_refused_naming_it(tmp_path: Path, damage, expected: str) -> None:
    (tmp_path / "tuner.pkl").write_bytes(pickle.dumps({}))
    _zip(tmp_path / BUNDLE, _save(OLD, ["a"]))
    damage(tmp_path / BUNDLE)
    with pytest.raises(StateError, match=f"{tmp_path / BUNDLE} cannot be read") as e:
        check_saved_state(str(tmp_path))
    assert expected in str(e.value)


def test_a_study_without_the_zip_has_its_newest_files_checked(tmp_path: Path) -> None:
    (tmp_path / "tuner.pkl").write_bytes(pickle.dumps({}))
    for name, data in {**_save(OLD, ["a"]), **_save(NEW, ["a"])}.items():
        (tmp_path / name).write_bytes(data)
    assert check_saved_state(str(tmp_path)) is None
    cut = tmp_path / f"searcher-state-{NEW}.pkl"
    cut.write_bytes(cut.read_bytes()[:5])
    with pytest.raises(StateError, match=f"{cut} cannot be read"):
        check_saved_state(str(tmp_path))


@pytest.mark.study
def test_a_real_study_leaves_its_last_save_whole_in_the_zip(asha_study) -> None:
    last = read_last_save(str(asha_study.dir))
    assert last is not None and len(last) == 3  # experiment, search algorithm, searcher
    assert all((asha_study.dir / n).read_bytes() == data for n, data in last.items())
