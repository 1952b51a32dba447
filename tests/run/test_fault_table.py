"""The fault table of issue #27: what a long study survives, driven through real studies.

Each row does one fault to a real study (`python -m study.run` in its own process, or the CLI
in this process on a copy of the session's finished ASHA study, or for a command refused before
Ray starts: an unreachable --address, a second driver) and asserts, the same way for
every row (`check`): the exit code, the one line that says what happened, study.json's `status`,
and that no finished trial row or epoch row was lost or duplicated (every epoch and trial end
the console printed is in the tables once; a refused command changed no byte of them).

Faults are injected where they happen to users: SIGINT and SIGTERM while the driver waits before
a phase (STUDY_FAULT_PAUSE) or while a trial trains; SIGKILL, or a full disk, at the moment a
state file is published (STUDY_FAULT_WRITE, study.storage: the temporary file is written, the
rename never happens).

Most rows' studies join one Ray head per test process (RAY_ADDRESS; tests/ray_head.py), as a
user's on a cluster do: each then starts in a few seconds instead of starting and stopping its
own Ray. The rows marked `own_ray` start their own, as `python -m study.run` does on a laptop:
the signals during tuning (Ray installs its own SIGTERM handler) and the GPU row, whose
RAY_OVERRIDE_RESOURCES only a Ray started by the study reads.
"""

from __future__ import annotations

import inspect
import json
import pickletools
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from conftest import STUDY_TEST_TIMEOUT_S, STUDY_TIMEOUT_S, study_cli, tree_snapshot
from study_process import signal_at, start, study_args

from study.data import prepare
from study.results.schema import EPOCHS, TRIALS
from study.results.tables import read_table
from study.run import __main__ as run
from study.run import driver
from study.storage import FAULT_WRITE
from study.tuning.gpu_check import FAKE_NO_CUDA

TABLES = (EPOCHS, TRIALS)


@dataclass
class Outcome:
    rc: int
    out: str  # the stdout of every run of the study in this row (its epoch and trial lines)
    err: str  # the stderr of the run the row is about
    study: Path
    before: dict | None = None  # a refused command: the study's files before it ran


@dataclass(frozen=True)
class Fault:
    id: str
    act: Callable[..., Outcome]
    rc: int
    message: str | None  # in exactly one line of stderr (the last, for a refusal or an error)
    status: str | None  # study.json's afterwards; None: there is no study.json
    on_finished_study: bool = False  # act(asha_study, tmp_path, capsys, monkeypatch)
    kw: dict = field(default_factory=dict)
    own_ray: bool = False  # the study starts its own Ray, not joining the shared head
    # over 8 s in the suite's measured runs (benchmarks/results/test_suite.txt): marked `slow`,
    # so left out of the README's test command and run by CI after it (.ci/run)
    slow: bool = False


def _study(tmp: Path) -> Path:
    return tmp / "s" / "x"


def _resume(tmp: Path, *extra: str, name: str = "x") -> subprocess.CompletedProcess:
    return study_cli("--resume", "--name", name, "--storage", str(tmp / "s"), *extra)


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=STUDY_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()


# ------------------------------------------------------------------ signals in each phase
def signalled(tmp: Path, data: Path, *, phase: str, signum: int) -> Outcome:
    extra = ["--confirm-seeds", "1"] if phase == "confirmation" else []
    extra += [] if phase == "report" else ["--no-report"]
    if phase == "tuning":  # a trial is training: Tune stops it and saves its state
        proc = start(tmp, data, *extra, epochs=3, fault="sleep=0.5")
        out, err = signal_at(proc, "] epoch 1:", [signum])
    else:
        proc = start(tmp, data, *extra, pause=phase)
        out, err = signal_at(proc, f"-- paused before {phase} (", [signum])
    assert f"resume with: python -m study.run --resume --name x --storage {tmp / 's'}" in out
    # the test split is read only by the phases that ran to their end
    scored = (_study(tmp) / "predictions.parquet").exists()
    assert scored == (phase in ("confirmation", "report")), out
    assert "\nreport: " not in out and not (_study(tmp) / "confirm.parquet").exists()
    return Outcome(proc.returncode, out, err, _study(tmp))


def signalled_then_resumed(tmp: Path, data: Path, *, signum: int) -> Outcome:
    """Ctrl-C while a trial trains, checked as every signal row is; then the printed --resume
    command finishes the study (what the row checks next: one study serves both)."""
    first = signalled(tmp, data, phase="tuning", signum=signum)
    check(_sig(signum, "tuning"), first)
    kept = read_table(str(first.study), EPOCHS)
    r = _resume(tmp, "--no-report")
    after = read_table(str(first.study), EPOCHS)
    both = kept.merge(after, on=["trial_id", "epoch"], suffixes=("", "_after"))
    assert len(both) == len(kept) and (both["val_acc"] == both["val_acc_after"]).all()
    return Outcome(r.returncode, first.out + r.stdout, r.stderr, first.study)


def second_signal(tmp: Path, data: Path) -> Outcome:
    proc = start(tmp, data, "--no-report", pause="decoding")
    out, err = signal_at(proc, "-- paused before decoding (", [signal.SIGINT, signal.SIGINT])
    return Outcome(proc.returncode, out, err, _study(tmp))


# ---------------------------------------------------- SIGKILL or a full disk at a state write
def _whole(path: Path) -> None:
    """The file parses as what its name says (a kill mid-write would leave it cut)."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        pq.read_table(path)
    elif path.suffix == ".pkl" or path.name.startswith("search_gen_state"):  # (a pickle too)
        assert data, path
        for _ in pickletools.genops(data):
            pass
    elif path.suffix == ".json":
        json.loads(data)


def killed_at_write(tmp: Path, data: Path, *, target: str, resume: bool, capsys=None) -> Outcome:
    """SIGKILL as `target` (NAME@N) is published: every state file is whole afterwards, and the
    study resumes (in a real run, or up to Ray in this process: what --resume checks first)."""
    extra = ["--no-report", *(["--confirm-seeds", "1"] if "confirm" in target else [])]
    proc = start(tmp, data, *extra, env={FAULT_WRITE: f"kill:{target}"}, epochs=2, trials=2)
    out, err = _finish(proc)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    sd = _study(tmp)
    name = target.split("@")[0]
    assert list(sd.glob(f".{name}*.tmp")), "the fault did not fire at the rename"
    for path in sd.iterdir():
        if path.is_file() and not path.name.startswith("."):
            _whole(path)
    assert json.loads((sd / "study.json").read_text())["status"] == "running"
    if resume:
        r = _resume(tmp, "--no-report", *extra[1:])
        assert not list(sd.glob(".*.tmp")) and "half-written: ." in r.stdout
        return Outcome(r.returncode, out + r.stdout, r.stderr, sd)
    # the resume's checks before Ray: Ray's state parses, the tables parse, the stale lock goes
    args = run.parse_args(["--resume", "--name", "x", "--storage", str(tmp / "s")])
    driver.prepare(args).lock.release()
    return Outcome(0, out, capsys.readouterr().err, sd)


def disk_full_at_write(tmp: Path, data: Path, *, target: str) -> Outcome:
    proc = start(tmp, data, "--no-report", env={FAULT_WRITE: f"enospc:{target}"})
    out, err = _finish(proc)
    assert not list(_study(tmp).glob(".*.tmp"))  # nothing half-written is left
    return Outcome(proc.returncode, out, err, _study(tmp))


# ------------------------------------------------------------------ drivers, data, machine
def two_drivers(tmp: Path, data: Path, *, resume: bool, capsys) -> Outcome:
    """A driver holds the study (paused before Ray, or before decoding once study.json exists);
    a second one, new or --resume, is refused naming it (in this process: the refusal comes
    before Ray, from the code a new process runs); the first then ends by Ctrl-C."""
    phase = "decoding" if resume else "starting Ray"
    first = start(tmp, data, "--no-report", pause=phase)
    assert first.stdout is not None
    seen = []
    for line in first.stdout:
        seen.append(line)
        if f"-- paused before {phase} (" in line:
            break
    capsys.readouterr()
    resume_args = ["--resume", "--name", "x", "--storage", str(tmp / "s")]
    rc = run.main(resume_args if resume else first.args[3:])
    refused = capsys.readouterr().err
    assert f"pid {first.pid}" in refused, refused[-2000:]
    first.send_signal(signal.SIGINT)
    out, err = _finish(first)
    assert first.returncode == 130, err[-2000:]
    if not resume:  # stopped before its study.json: nothing to resume
        assert "SIGINT during starting Ray; the study had not started" in err, err[-2000:]
        assert "resume with" not in out
    return Outcome(rc, "".join(seen) + out, refused, _study(tmp))


def data_prepared_again(tmp: Path, data: Path) -> Outcome:
    """`prepare --overwrite` with another seed while the study runs (its own copy of the data)."""
    mine = tmp / "data"
    prepare("toon", source="tiny", data_dir=mine, seed=0)
    go_on = tmp / "go-on"
    proc = start(tmp, mine, "--no-report", pause="test evaluation",
                 env={"STUDY_FAULT_CONTINUE": str(go_on)})  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "-- paused before test evaluation (" in line:
            prepare("toon", source="tiny", data_dir=mine, seed=1, overwrite=True)
            go_on.touch()
            break
    out, err = _finish(proc)
    assert not (_study(tmp) / "predictions.parquet").exists()
    return Outcome(proc.returncode, "".join(seen) + out, err, _study(tmp))


def refused_here(tmp: Path, data: Path, *, args: tuple, capsys) -> Outcome:
    """A command refused before Ray starts, run in this process (the code a new process runs)."""
    capsys.readouterr()
    rc = run.main(study_args(tmp, data, "--no-report", *args))
    return Outcome(rc, "", capsys.readouterr().err, _study(tmp))


def plain_run(tmp: Path, data: Path, *, args: tuple = (), env: dict | None = None, **space):
    proc = start(tmp, data, "--no-report", *args, env=env, **space)
    out, err = _finish(proc)
    return Outcome(proc.returncode, out, err, _study(tmp))


# ------------------------------------------------------------- faults on a finished study
def _copy(asha_study, tmp: Path, name: str = "x") -> Path:
    target = tmp / "s" / name
    shutil.copytree(asha_study.dir, target)
    return target


def truncated(asha_study, tmp, capsys, monkeypatch, *, state: str) -> Outcome:
    sd = _copy(asha_study, tmp)
    path = sorted(p for p in sd.iterdir() if p.name.startswith(state))[-1]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = tree_snapshot(sd)
    started: list = []
    monkeypatch.setattr(ray, "init", lambda **kw: started.append(kw))
    rc = run.main(["--resume", "--name", "x", "--storage", str(tmp / "s"), "--no-report"])
    err = capsys.readouterr().err
    assert started == [] and str(path) in err, err
    return Outcome(rc, "", err, sd, before)


def _older_save(path: Path) -> None:
    """The experiment state of a save before the last: one trial fewer than the searcher's."""
    state = json.loads(path.read_bytes())
    state["trial_data"] = state["trial_data"][:-1]
    path.write_text(json.dumps(state))


DAMAGE = {"truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
          "older-save": _older_save}  # fmt: skip


def put_back(asha_study, tmp, capsys, monkeypatch, *, state: str, damage: str) -> Outcome:
    """A Ray state file that is cut, or from another save than its neighbours (a driver killed
    while Tune uploaded a save), is put back from ray_state.zip by the resume's checks before
    Ray (in this process: the code a new process runs)."""
    sd = _copy(asha_study, tmp)
    path = sorted(p for p in sd.iterdir() if p.name.startswith(state))[-1]
    whole = path.read_bytes()
    DAMAGE[damage](path)
    args = run.parse_args(["--resume", "--name", "x", "--storage", str(tmp / "s")])
    driver.prepare(args).lock.release()
    assert path.read_bytes() == whole
    return Outcome(0, "", capsys.readouterr().err, sd)


def tuner_missing(asha_study, tmp, capsys, monkeypatch) -> Outcome:
    sd = _copy(asha_study, tmp)
    (sd / "tuner.pkl").unlink()
    before = tree_snapshot(sd)
    rc = run.main(["--resume", "--name", "x", "--storage", str(tmp / "s"), "--no-report"])
    return Outcome(rc, "", capsys.readouterr().err, sd, before)


def space_changed(asha_study, tmp, capsys, monkeypatch) -> Outcome:
    """The copy's study.json points at a copy of its space file, which is then edited."""
    sd = _copy(asha_study, tmp)
    meta = json.loads((sd / "study.json").read_text())
    space = tmp / "space.py"
    shutil.copy(meta["space_ref"], space)
    meta["space_ref"] = str(space)
    (sd / "study.json").write_text(json.dumps(meta))
    space.write_text(space.read_text() + "\n# edited\n")
    before = tree_snapshot(sd)
    rc = run.main(["--resume", "--name", "x", "--storage", str(tmp / "s"), "--no-report"])
    return Outcome(rc, "", capsys.readouterr().err, sd, before)


def moved(asha_study, tmp, capsys, monkeypatch, *, name: str) -> Outcome:
    """A copied (same name, another storage) or renamed study resumes in its own folder."""
    sd = _copy(asha_study, tmp, name)
    original = tree_snapshot(asha_study.dir)
    copied = (sd / "predictions.parquet").stat().st_mtime_ns
    r = _resume(tmp, "--no-report", name=name)
    assert tree_snapshot(asha_study.dir) == original  # nothing written into the original
    assert (sd / "predictions.parquet").stat().st_mtime_ns > copied  # scored again, here
    return Outcome(r.returncode, asha_study.stdout + r.stdout, r.stderr, sd)


def _sig(signum: int, phase: str) -> Fault:
    name = signal.Signals(signum).name
    return Fault(
        f"{name.lower()}-{phase.replace(' ', '-')}",
        signalled,
        128 + signum,
        f"interrupted: {name} during {phase}; finished trials are kept in",
        "interrupted",
        kw={"phase": phase, "signum": signum},
        own_ray=phase == "tuning",
        slow=phase != "decoding",  # a study that trains: 10-40 s; before decoding: 4-5 s
    )


def _kill(target: str, resume: bool = False, slow: bool = True) -> Fault:
    # a killed driver records nothing: the study stays "running" until a resume takes it over
    return Fault(
        f"sigkill-at-{target}",
        killed_at_write,
        0,
        "taking over the lock",
        "finished" if resume else "running",
        kw={"target": target, "resume": resume},
        slow=slow,
    )


def _truncated(state: str, message: str) -> Fault:
    return Fault(f"truncated-{state}", truncated, 2, message, "finished", True, {"state": state})


def _put_back(state: str, damage: str = "truncated") -> Fault:
    return Fault(f"{damage}-{state}", put_back, 0, "put back from ray_state.zip", "finished", True,
                 {"state": state, "damage": damage})  # fmt: skip


PHASES = ("decoding", "tuning", "test evaluation", "confirmation", "report")
RUN_FAULTS = [
    *(_sig(s, p) for p in PHASES for s in (signal.SIGINT, signal.SIGTERM)
      if (s, p) != (signal.SIGINT, "tuning")),
    # the row of SIGINT during tuning (checked as the others, in signalled_then_resumed), resumed
    Fault("sigint-tuning", signalled_then_resumed, 0, None, "finished",
          kw={"signum": signal.SIGINT}, own_ray=True, slow=True),
    Fault("second-sigint", second_signal, 130, None, "interrupted"),
    _kill("study.json@2"),  # the record of tuning's end
    _kill("trials.parquet@1"),  # a trial's first epoch
    _kill("experiment_state@2", resume=True),  # Ray's state
    _kill("ray_state.zip@2", resume=True),  # Ray's state, whole
    _kill("search_gen_state@1", slow=False),  # the first state writes: before a trial trains
    _kill("searcher-state@1", slow=False),
    _kill("tuner.pkl@1", slow=False),
    _kill("epochs.parquet@1"),  # the epoch logs merged at the end of tuning
    _kill("predictions.parquet@1", resume=True),  # the test split's scores
    _kill("confirm.parquet@1"),
    Fault("disk-full-at-trials.parquet", disk_full_at_write, 2,
          "trials.parquet: cannot be written", "failed", kw={"target": "trials.parquet@1"},
          slow=True),
    Fault("disk-full-at-predictions.parquet", disk_full_at_write, 2,
          "predictions.parquet: cannot be written", "failed",
          kw={"target": "predictions.parquet@1"}, slow=True),
    Fault("two-drivers", two_drivers, 2, "in use by another driver", None,
          kw={"resume": False}),
    Fault("resume-of-a-running-study", two_drivers, 2, "in use by another driver",
          "interrupted", kw={"resume": True}),
    Fault("data-set-prepared-again", data_prepared_again, 1, "prepared again", "failed",
          slow=True),
    Fault("unreachable-address", refused_here, 2, "--address 127.0.0.1:1: ", None,
          kw={"args": ("--address", "127.0.0.1:1")}),
    Fault("unresolvable-address", refused_here, 2, "cannot resolve host 'no-such-host.invalid'",
          None, kw={"args": ("--address", "no-such-host.invalid:6379")}),
    Fault("gpu-without-usable-cuda", plain_run, 1, "stopped before any trial", None,
          kw={"env": {FAKE_NO_CUDA: "1", "RAY_OVERRIDE_RESOURCES": '{"GPU": 1}'}}, own_ray=True,
          slow=True),
    Fault("every-trial-errored", plain_run, 1, "error: no trial finished", "failed",
          kw={"fault": "oom@1"}, slow=True),
]  # fmt: skip
FINISHED_STUDY_FAULTS = [
    _put_back("experiment_state"),
    _put_back("experiment_state", "older-save"),  # (the files of a resume that hung)
    _put_back("search_gen_state"),
    _put_back("searcher-state"),
    _truncated("ray_state.zip", "cannot be read"),
    _truncated("tuner.pkl", "cannot be read"),
    Fault("truncated-study.json", truncated, 2, "study.json", "unreadable", True,
          {"state": "study.json"}),
    _truncated("trials.parquet", "trials.parquet"),
    _truncated("epochs.parquet", "epochs.parquet"),
    _truncated("optuna.db", "optuna.db"),
    Fault("tuner.pkl-missing", tuner_missing, 2, "tuner.pkl is missing", "finished", True),
    Fault("space-file-changed", space_changed, 2, "changed since the study began", "finished",
          True),
    Fault("copied-study", moved, 0, None, "finished", True, {"name": "x"}, slow=True),
    Fault("renamed-study", moved, 0, None, "finished", True, {"name": "renamed"}, slow=True),
]  # fmt: skip
FAULTS = RUN_FAULTS + FINISHED_STUDY_FAULTS


def _status(record: Path) -> str | None:
    try:
        return json.loads(record.read_text())["status"] if record.exists() else None
    except ValueError:
        return "unreadable"


def check(fault: Fault, o: Outcome) -> None:
    """What every row asserts."""
    assert o.rc == fault.rc, o.err[-3000:]
    assert "Traceback" not in o.err, o.err[-3000:]
    if fault.message is not None:
        lines = [line for line in o.err.splitlines() if fault.message in line]
        assert len(lines) == 1, o.err[-3000:]
        if fault.rc not in (0, -signal.SIGKILL):  # how it ended: the last line
            assert o.err.strip().splitlines()[-1] == lines[0], o.err[-3000:]
    status = _status(o.study / "study.json")
    assert status == fault.status
    if o.before is not None:  # a refusal changed nothing
        assert tree_snapshot(o.study) == o.before
        return
    epochs, trials = (read_table(str(o.study), t) for t in TABLES)
    printed = set(re.findall(r"^\[(\w+)\] epoch (\d+):", o.out, re.M))
    kept = (
        set()
        if epochs is None
        else {(t, str(e)) for t, e in zip(epochs.trial_id, epochs.epoch, strict=True)}
    )
    assert printed <= kept, f"epochs printed but not kept: {printed - kept}"
    if epochs is not None:
        assert not epochs.duplicated(["trial_id", "epoch"]).any()
    ended = re.findall(r"^\[(\w+)\] (finished|stopped|errored|diverged):", o.out, re.M)
    if trials is not None:
        assert trials["trial_id"].is_unique
        status_of = dict(zip(trials.trial_id, trials.status, strict=True))
        assert all(status_of.get(t) == s for t, s in ended), (ended, status_of)
        if fault.status == "finished":
            assert "running" not in status_of.values()
    else:
        assert not ended


def _params(faults: list[Fault]) -> list:
    return [pytest.param(f, id=f.id, marks=[pytest.mark.slow] if f.slow else []) for f in faults]


def test_the_readme_counts_the_rows_of_this_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"A table of {len(FAULTS)} faults" in readme


def test_the_table_has_a_row_for_each_fault_the_issue_names() -> None:
    ids = {f.id for f in FAULTS}
    assert len(FAULTS) >= 30 and len(ids) == len(FAULTS)
    for s in ("sigint", "sigterm"):
        assert all(f"{s}-{p.replace(' ', '-')}" in ids for p in PHASES)


@pytest.mark.study
@pytest.mark.timeout(STUDY_TEST_TIMEOUT_S)
@pytest.mark.parametrize("fault", _params(RUN_FAULTS))
def test_fault(fault: Fault, tiny_toon, tmp_path, capsys, request, monkeypatch) -> None:
    if not fault.own_ray:  # the studies this row starts inherit it
        for k, v in request.getfixturevalue("shared_ray").items():
            monkeypatch.setenv(k, v)
    extra = {"capsys": capsys} if "capsys" in inspect.signature(fault.act).parameters else {}
    check(fault, fault.act(tmp_path, tiny_toon, **fault.kw, **extra))


@pytest.mark.parametrize("fault", _params(FINISHED_STUDY_FAULTS))
def test_fault_on_a_finished_study(fault: Fault, asha_study, tmp_path, capsys, monkeypatch):
    check(fault, fault.act(asha_study, tmp_path, capsys, monkeypatch, **fault.kw))
