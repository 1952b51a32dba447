"""The console says where a study stands: trial start lines, status lines (done by how they
ended, running, pending, best so far, elapsed and left), phase messages, and none of the noise
(Optuna's "A new study created", Ray's configuration box and TensorBoard hint into /tmp/ray,
numpy RuntimeWarnings)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from study import console
from study.console import Progress, duration, key_params
from study.tuning.callbacks import ConsoleCallback


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


CONFIG = {"model": "googlenet", "lr": 0.00213, "suggested": {"model": "googlenet", "lr": 0.00213}}


def test_status_line_counts_trials_best_elapsed_and_left(capsys) -> None:
    clock = Clock()
    p = Progress(10, "val_acc", "max", clock=clock)
    p.started("a", CONFIG, 1)
    p.started("b", {"model": "vanilla_cnn", "suggested": {"depth": 3, "dropout": 0.25}}, 2)
    assert _lines(capsys) == [
        "[a] start (trial 1 of 10): googlenet, lr=0.00213",
        "[b] start (trial 2 of 10): vanilla_cnn, depth=3, dropout=0.25",
    ]
    p.result("a", CONFIG, {"epoch": 1, "val_acc": 0.4, "train_loss": 1.5, "epoch_s": 2.0})
    p.result("b", {"model": "vanilla_cnn"}, {"epoch": 1, "val_acc": 0.5})
    p.result("b", {"model": "vanilla_cnn"}, {"epoch": 2, "val_acc": float("nan")})  # diverged
    assert _lines(capsys)[0] == "[a] epoch 1: train_loss 1.500 val_acc 0.400 (2.0 s, ? img/s)"
    clock.t = 60.0
    p.ended("a", "finished", "max_epochs")
    p.ended("b", "diverged", "loss became nan")
    p.step({"finished": 1, "diverged": 1, "running": 3})
    assert _lines(capsys)[-1] == (
        "status: 2 of 10 trials done (1 finished, 0 stopped, 1 diverged, 0 errored); "
        "3 running, 5 pending; best val_acc 0.500 (b, vanilla_cnn); 1m00s elapsed, ~4m00s left"
    )


def test_status_lines_come_on_change_and_every_30_s_without_repeats(capsys) -> None:
    clock = Clock()
    p = Progress(4, "val_loss", "min", clock=clock)
    clock.t = 10.0
    p.step({"running": 2})
    assert _lines(capsys) == []  # nothing happened and 30 s have not passed
    clock.t = 31.0
    p.step({"running": 2})
    (line,) = _lines(capsys)
    assert "0 of 4 trials done" in line and "time left known after the first trial ends" in line
    clock.t = 40.0
    p.step({"running": 2})
    assert _lines(capsys) == []
    p.offer("x", 0.7)
    p.offer("y", 0.3)  # mode min: lower is better
    p.ended("x", "stopped", "ASHA")
    p.step({"stopped": 1, "running": 1})
    (line,) = [x for x in _lines(capsys) if x.startswith("status:")]
    assert "best val_loss 0.300 (y, ?)" in line and "~2m00s left" in line
    p.step({"stopped": 1, "running": 1}, force=True)  # the same line again: not repeated
    assert _lines(capsys) == []


def test_quiet_prints_no_progress(capsys, monkeypatch) -> None:
    monkeypatch.setattr(console, "_level", console.QUIET)
    p = Progress(2, "val_acc", "max", clock=Clock())
    p.started("a", CONFIG, 1)
    p.ended("a", "finished", "max_epochs")
    p.step({"finished": 1}, force=True)
    console.phase("decoding")
    assert capsys.readouterr().out == ""


def test_formats() -> None:
    assert [duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]
    long = {"model": "m", "suggested": {f"p{i}": 0.1234567 for i in range(40)}}
    assert len(key_params(long)) == 140 and key_params(long).endswith("...")


def _trial(tid: str, status: str, last: dict | None = None, best: float | None = None):
    stats = {"val_acc": {"max": best}} if best is not None else {}
    return SimpleNamespace(
        trial_id=tid, status=status, last_result=last or {}, config={"model": "m"},
        metric_analysis=stats, error_file=None,
    )  # fmt: skip


def test_the_callback_counts_trials_by_how_they_ended(capsys) -> None:
    """Ray says TERMINATED for finished, ASHA-stopped and diverged trials alike; the console
    tells them apart by the trial's own end reason, as trials.parquet does."""
    cb = ConsoleCallback(8, "val_acc", "max")
    cb.setup()
    trials = [
        _trial("f", "TERMINATED", {"epoch": 4, "end_reason": "max_epochs"}, best=0.6),
        _trial("s", "TERMINATED", {"epoch": 1, "end_reason": ""}, best=0.2),
        _trial("d", "TERMINATED", {"epoch": 2, "end_reason": "diverged"}),
        _trial("e", "ERROR"),
        _trial("r", "RUNNING"),
        _trial("p", "PENDING"),
    ]
    assert cb._counts(trials) == {
        "finished": 1, "stopped": 1, "diverged": 1, "errored": 1, "running": 1,
    }  # fmt: skip
    cb.on_step_end(0, trials)  # the first status line of a resumed study knows the best
    cb.on_trial_start(0, trials, trials[4])
    cb.on_trial_start(0, trials, trials[4])  # a retry: no second start line
    out = capsys.readouterr().out
    assert out.count("[r] start (trial 5 of 8)") == 1
    cb.progress.step(cb._counts(trials), force=True)
    assert "best val_acc 0.600 (f, m)" in capsys.readouterr().out


@pytest.mark.study
def test_a_real_studys_console_says_where_it_stands(asha_study) -> None:
    """The session's ASHA study (8 trials, 2 at a time): its captured stdout and stderr."""
    out, err = asha_study.stdout, asha_study.stderr
    starts = re.findall(r"^\[(\w+)\] start \(trial \d of 8\): vanilla_cnn, lr=", out, re.M)
    assert sorted(starts) == sorted(asha_study.trials["trial_id"])
    status = [line for line in out.splitlines() if line.startswith("status: ")]
    assert len(status) >= 2 and status[-1].startswith("status: 8 of 8 trials done (")
    assert "best val_acc" in status[-1] and "elapsed" in status[-1]
    for phase in ("starting Ray", "decoding toon", "tuning: 8 trials", "evaluating the best"):
        assert f"-- {phase}" in out, phase
    assert "leaderboard" in out
    for noise in (
        "A new study created",
        "/ray/session_",  # Ray's session dir (under conftest.RAY_TMPDIR here, /tmp/ray for users)
        "Configuration for experiment",
        "RuntimeWarning",
        "process_trial_result took",
        "Experiment state snapshotting",  # Tune's warning when it saves its state often
    ):
        assert noise not in out and noise not in err, noise
