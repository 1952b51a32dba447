"""`python -m study.run` and the study's files (issue #27, item 9). `--resume` checks the files the
resumed driver reads back before Ray starts: a damaged table, epoch log or optuna.db, or a study
folder it cannot write, is one line naming the file and exit code 2, not a traceback from inside
Ray's restore. A full disk while the study runs is one line too.

The study folder holds a recorded study.json of the demo space and the damaged file; Ray's init is
made to fail, so a check that let the run through would exit 1 ("cannot start Ray") instead.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray

from study.results.errors import StudyFileError
from study.results.tables import write_json, write_parquet
from study.run import __main__ as run
from study.run import overrides
from study.spaces.loader import load_space
from study.tuning.optuna_storage import check_optuna_db


@pytest.fixture
def resumable(tiny_toon: Path, tmp_path: Path, monkeypatch) -> Path:
    """storage/x: the record of a demo study on the tiny toon set, and its trials.parquet."""
    settings = overrides.resolve(run.parse_args(["--space", "demo"]), load_space("demo"))[0]
    sd = tmp_path / "s" / "x"
    meta = {"name": "x", "space": "demo", "seed": 0, "dataset": {"data_dir": str(tiny_toon)}}
    meta["settings"] = {**asdict(settings), "max_concurrent": None, "smoke_test": False}
    write_json(meta, sd / "study.json")
    write_parquet(pd.DataFrame({"trial_id": ["t1"], "status": ["finished"]}), sd / "trials.parquet")

    def no_ray(**_):
        raise RuntimeError("Ray was started: the damaged file was not caught before")

    monkeypatch.setattr(ray, "init", no_ray)
    return sd


def resume(sd: Path, capsys) -> tuple[int, str]:
    code = run.main(["--resume", "--storage", str(sd.parent), "--name", sd.name, "--no-report"])
    return code, capsys.readouterr().err


def truncated(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _asha_rungs(sd: Path) -> Path:
    write_parquet(pd.DataFrame({"milestone": [1], "trial_id": ["t1"]}), sd / "asha_rungs.parquet")
    truncated(sd / "asha_rungs.parquet")
    return sd / "asha_rungs.parquet"


def _epoch_log(sd: Path) -> Path:
    (sd / "epochs.parts").mkdir()
    (sd / "epochs.parts" / "t1.jsonl").write_bytes(b'{"trial_id": "t1", "epoch": 1}\n\xff\xfe\n')
    return sd / "epochs.parts" / "t1.jsonl"


def _optuna_db(sd: Path) -> Path:
    (sd / "optuna.db").write_bytes(b"SQLite format 3\x00" + b"\x13" * 2000)
    return sd / "optuna.db"


def _trials(sd: Path) -> Path:
    truncated(sd / "trials.parquet")
    return sd / "trials.parquet"


DAMAGE = {"trials": _trials, "asha rungs": _asha_rungs, "epoch log": _epoch_log}
DAMAGE["optuna.db"] = _optuna_db


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_file_of_the_study_is_named_before_ray_starts(resumable, capsys, damage) -> None:
    path = damage(resumable)
    code, err = resume(resumable, capsys)
    errors = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: "), err
    assert str(path) in errors[0] and "restore it from a copy" in errors[0], err
    assert "Traceback" not in err


def test_a_study_folder_it_cannot_write_is_named_before_ray_starts(
    resumable, capsys, monkeypatch
) -> None:
    """--storage is writable but the study's own folder is not (a copy made read-only)."""
    mkdtemp = tempfile.mkdtemp

    def probe(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
        if dir is not None and Path(dir) == resumable:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", probe)
    code, err = resume(resumable, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"error: {resumable}: cannot write there" in err and "make it writable" in err


def test_a_healthy_optuna_db_passes_and_a_truncated_one_is_named(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path / "optuna.db"
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="x")
    study.optimize(lambda t: t.suggest_float("a", 0, 1), n_trials=3)
    before = db.read_bytes()
    check_optuna_db(str(tmp_path))
    assert db.read_bytes() == before  # a sound file: nothing changed
    db.write_bytes(before[: len(before) // 3])
    with pytest.raises(StudyFileError) as e:
        check_optuna_db(str(tmp_path))
    assert str(e.value).startswith(f"{db}: ") and "restore it from a copy" in str(e.value)


KILLED_MID_WRITE = """
import os, sqlite3
db = sqlite3.connect("optuna.db", isolation_level=None)
db.execute("CREATE TABLE studies (study_name TEXT)")
db.execute("PRAGMA cache_size=1")  # pages reach the file before the commit
db.execute("BEGIN")
for _ in range(500):
    db.execute("INSERT INTO studies VALUES (?)", (os.urandom(1000).hex(),))
os._exit(0)  # killed: its journal is left to roll the file back
"""


def test_an_optuna_db_a_killed_driver_left_mid_write_passes(tmp_path: Path) -> None:
    """Optuna rolls such a file back when it opens it; so does the check (a read-only look
    could not, and would call a sound file damaged)."""
    subprocess.run([sys.executable, "-c", KILLED_MID_WRITE], cwd=tmp_path, check=True)
    assert (tmp_path / "optuna.db-journal").exists()
    check_optuna_db(str(tmp_path))
    assert not (tmp_path / "optuna.db-journal").exists()


def test_a_full_disk_during_the_run_is_one_line(
    tiny_toon: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The driver's first write (study.json, once Ray is up) meets a full disk: one line naming
    the file, exit code 2, no traceback (Ray is stood in for: nothing trains)."""
    monkeypatch.setattr(ray, "init", lambda **_: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    replace = os.replace

    def full(src, dst):
        if str(dst).endswith("study.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    args = ["--space", "demo", "--smoke-test", "--data-dir", str(tiny_toon), "--no-report"]
    code = run.main([*args, "--storage", str(tmp_path / "s"), "--name", "x"])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert code == 2 and len(errors) == 1, err
    assert f"{tmp_path / 's' / 'x' / 'study.json'}: cannot be written" in errors[0]
    assert "disk is full" in errors[0] and "Traceback" not in err
