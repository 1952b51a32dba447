"""Issue #27 (3): one driver per study, through `python -m study.run`. A second driver of a study
(a new run of the same --name, or --resume of a running study) is refused in one line before Ray
starts and before anything is written; a stale lock is taken over with a message; the lock is
held while the study runs and removed however the run ends."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest
import ray
from conftest import tree_snapshot
from lock_fixture import finished_pid, write_lock
from test_run_inputs import record_study

from study.data import prepare
from study.results.lock import LOCK
from study.run import __main__ as run
from study.run import driver
from study.run.lifecycle import Interrupted


def cli(data_dir: Path, tmp: Path, *extra: str) -> list[str]:
    """A smoke study of the demo space named x, without a report."""
    mine = ["--data-dir", str(data_dir), "--storage", str(tmp / "s"), *extra]
    return "--space demo --smoke-test --name x --no-report".split() + mine


@pytest.fixture(scope="module")
def toon(tmp_path_factory) -> Path:
    """The toon 'tiny' set, prepared once for the module."""
    d = tmp_path_factory.mktemp("data")
    prepare("toon", source="tiny", data_dir=d, seed=0)
    return d


@pytest.fixture
def inits(monkeypatch) -> list[dict]:
    """ray.init stubbed (as in test_run_inputs): the calls it got."""
    calls: list[dict] = []
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    return calls


def refused(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("resume", [True, False])
def test_a_running_study_is_refused_before_ray(toon, tmp_path, inits, capsys, resume) -> None:
    """--resume of a study whose driver runs (its lock names this live process), or a new run of
    its name: one line naming the holder, exit 2, Ray never started, nothing written."""
    sd = tmp_path / "s" / "x"
    record_study(sd, toon, smoke=True)
    theirs = write_lock(sd)
    before = tree_snapshot(tmp_path)
    assert run.main(cli(toon, tmp_path, *(["--resume"] if resume else []))) == 2
    line = refused(capsys)
    for words in ("in use by another driver", f"pid {os.getpid()}", socket.gethostname()):
        assert words in line, line
    assert theirs["started"] in line and f"kill {os.getpid()}" in line
    assert inits == [] and tree_snapshot(tmp_path) == before


def test_a_stale_lock_is_taken_over_and_the_run_removes_it(
    toon,
    tmp_path,
    inits,
    capsys,
    monkeypatch,
) -> None:
    """A lock left by a driver that died before writing anything (its pid has ended): the run
    says it takes it over, holds its own while it runs, and removes it when it fails."""
    sd = tmp_path / "s" / "x"
    write_lock(sd, pid=(dead := finished_pid()))
    held = {}

    def stop(**_):
        held.update(json.loads((sd / LOCK).read_text()))
        raise RuntimeError("stop here")

    monkeypatch.setattr(driver, "build_tuner", stop)
    with pytest.raises(RuntimeError, match="stop here"):
        run.main(cli(toon, tmp_path))
    err = capsys.readouterr().err
    assert "taking over the lock" in err and f"pid {dead}" in err and "no longer runs" in err
    assert held["pid"] == os.getpid() and held["token"] != "theirs"
    assert not (sd / LOCK).exists() and (sd / "study.json").is_file()


# how a run may end early: an error, Ctrl-C outside the handler, SIGTERM as the lifecycle raises it
STOPS = [
    (RuntimeError("stop here"), RuntimeError),
    (KeyboardInterrupt("stop here"), KeyboardInterrupt),
    (Interrupted(signal.SIGTERM, "tuning"), 143),
]


@pytest.mark.parametrize(("stop", "ends"), STOPS, ids=["error", "ctrl-c", "sigterm"])
def test_the_lock_is_held_while_running_and_removed_however_it_ends(
    toon, tmp_path, inits, capsys, monkeypatch, stop, ends
) -> None:
    """While the study runs a second driver of it is refused (it names this one); the lock goes
    when the run ends with an error, Ctrl-C or SIGTERM, and the study can then be resumed."""
    sd = tmp_path / "s" / "x"
    second: dict = {}

    def build_tuner(**_):
        assert (sd / LOCK).is_file()
        second["new"] = run.main(cli(toon, tmp_path))
        second["new_err"] = capsys.readouterr().err
        second["resume"] = run.main([*cli(toon, tmp_path), "--resume"])
        second["resume_err"] = capsys.readouterr().err
        raise stop

    monkeypatch.setattr(driver, "build_tuner", build_tuner)
    if isinstance(ends, int):
        assert run.main(cli(toon, tmp_path)) == ends
    else:
        with pytest.raises(ends, match="stop here"):
            run.main(cli(toon, tmp_path))
    assert second["new"] == 2 and second["resume"] == 2, second
    for key in ("new_err", "resume_err"):
        assert f"pid {os.getpid()}" in second[key] and "in use" in second[key], second[key]
    assert len(inits) == 1  # the refused drivers never started Ray
    assert not (sd / LOCK).exists()
    monkeypatch.setattr(driver, "run_study", lambda study, *_: study.lock.release() or 0)
    assert run.main([*cli(toon, tmp_path), "--resume"]) == 0


def test_two_drivers_preparing_one_new_study_one_proceeds(toon, tmp_path, inits) -> None:
    """The "already exists" check passed for both of two drivers started together: the lock
    is the atomic decision, taken at the end of prepare (before Ray)."""
    a = run.parse_args(cli(toon, tmp_path))
    start, ok, errors = threading.Barrier(2), [], []

    def one() -> None:
        start.wait()
        try:
            ok.append(driver.prepare(a))
        except ValueError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 1 and len(errors) == 1, errors
    assert "in use by another driver" in errors[0], errors
    ok[0].lock.release()
    assert inits == [] and not (tmp_path / "s" / "x" / LOCK).exists()
