"""A damaged study file is one line naming it and what to do, never a library's traceback (issue
#27, item 9): truncated tables, an epoch log with bytes that are not text, a study.json that is
not JSON, and a full or read-only disk when a table is written. No torch, no Ray: the study is the
report's synthetic one (tests/report_fixture.py); weights are tested in tests/evaluation.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from report_fixture import make_study

import study
from study.report.__main__ import main as report_main
from study.results.errors import StudyFileError
from study.results.schema import CONFIRM, EPOCH_PARTS
from study.results.tables import append_epoch, read_table, write_json, write_parquet


def assert_one_named_line(text: str, path: Path | str) -> None:
    """The message a user reads: one line, the file's path, what to do, nothing unsafe."""
    assert str(path) in text, text
    assert "\n" not in text.strip(), text
    assert "Traceback" not in text and "weights_only=False" not in text, text
    assert "restore" in text or "free space" in text or "writable" in text, text


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


@pytest.fixture
def sd(tmp_path: Path) -> Path:
    return make_study(tmp_path)


@pytest.mark.parametrize("table", ["trials", "epochs", "predictions", "gradcam", "confirm"])
def test_a_truncated_table_is_named(sd: Path, table: str) -> None:
    path = sd / f"{table}.parquet"
    if table == "confirm":  # written after confirmation runs: any small table will do
        write_parquet(pd.DataFrame({"trial_id": ["t000"], "val_acc_mean": [0.5]}), sd / CONFIRM)
    truncate(path)
    with pytest.raises(StudyFileError) as e:
        study.load(sd)
    assert e.value.path == str(path)
    assert_one_named_line(str(e.value), path)
    assert "not a readable Parquet file" in str(e.value)


def test_bad_bytes_in_an_epoch_log_are_named(sd: Path) -> None:
    log = sd / EPOCH_PARTS / "t001.jsonl"
    log.parent.mkdir()
    log.write_bytes(b'{"trial_id": "t001", "epoch": 9}\n\xff\xfe\x00\x13garbage\n')
    with pytest.raises(StudyFileError) as e:
        read_table(sd, "epochs.parquet")
    assert_one_named_line(str(e.value), log)
    assert "delete it" in str(e.value)  # the other remedy: its unmerged epochs are lost


def test_a_cut_line_in_an_epoch_log_costs_no_later_row(tmp_path: Path) -> None:
    """A killed driver (or a full disk) leaves half a line; the next row, appended by the
    resumed driver, is its own line and is read back."""
    row = {"trial_id": "t1", "epoch": 1, "val_acc": 0.5, "time": 1.0}
    append_epoch(tmp_path, row, [row])
    log = tmp_path / EPOCH_PARTS / "t1.jsonl"
    log.write_bytes(log.read_bytes() + b'{"trial_id": "t1", "epo')  # cut short
    later = {**row, "epoch": 2, "val_acc": 0.6}
    append_epoch(tmp_path, later, [row, later])
    epochs = read_table(tmp_path, "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2]
    assert epochs["val_acc"].tolist() == [0.5, 0.6]


def test_study_json_that_is_not_text_is_named(sd: Path) -> None:
    (sd / "study.json").write_bytes(b"\x80\x81 not json")
    with pytest.raises(StudyFileError) as e:
        study.load(sd)
    assert_one_named_line(str(e.value), sd / "study.json")
    assert "not valid JSON" in str(e.value)


def test_the_report_names_a_damaged_file_in_one_line(sd: Path, tmp_path: Path, capsys) -> None:
    record = (sd / "study.json").read_bytes()
    (sd / "study.json").write_bytes(b"\x80\x81")
    assert report_main([str(sd), "--out", str(tmp_path / "a")]) == 2
    assert_one_named_line(capsys.readouterr().err, sd / "study.json")
    (sd / "study.json").write_bytes(record)
    write_parquet(pd.DataFrame({"trial_id": ["t000"]}), sd / CONFIRM)  # read while drawing
    truncate(sd / CONFIRM)
    assert report_main([str(sd), "--out", str(tmp_path / "b")]) == 2
    assert_one_named_line(capsys.readouterr().err, sd / CONFIRM)
    assert not (tmp_path / "b" / "index.html").exists()


def test_the_report_command_prints_one_line_and_no_traceback(sd: Path, tmp_path: Path) -> None:
    truncate(sd / "trials.parquet")
    r = subprocess.run(
        [sys.executable, "-m", "study.report", str(sd), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ")
    assert_one_named_line(r.stderr, sd / "trials.parquet")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "disk is full"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_a_full_or_read_only_disk_is_one_line_and_keeps_the_old_file(
    sd: Path, monkeypatch, code: int, words: str
) -> None:
    path = sd / "trials.parquet"
    before = path.read_bytes()

    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StudyFileError) as e:
        write_parquet(pd.read_parquet(path), path)
    assert_one_named_line(str(e.value), path)
    assert words in str(e.value)
    with pytest.raises(StudyFileError, match="study.json: cannot be written"):
        write_json({"name": "x"}, sd / "study.json")
    assert path.read_bytes() == before  # nothing half-written, and no temporary left behind
    assert not [p.name for p in sd.iterdir() if p.name.endswith(".tmp")]

    def broken(src, dst):  # not the user's to fix: a bug or a device error, seen whole
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError) as e:
        write_json({}, sd / "x.json")
    assert not isinstance(e.value, StudyFileError)


def test_a_full_disk_while_logging_an_epoch_is_one_line(tmp_path: Path, monkeypatch) -> None:
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "open", full)
    row = {"trial_id": "t1", "epoch": 1}
    with pytest.raises(StudyFileError) as e:
        append_epoch(tmp_path, row, [row])
    assert_one_named_line(str(e.value), tmp_path / EPOCH_PARTS / "t1.jsonl")
