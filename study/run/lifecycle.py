"""A study's lifecycle as study.json records it (`status`: running, interrupted, failed, finished,
with when and why) and what Ctrl-C and SIGTERM do to a run.

The first SIGINT or SIGTERM stops the run in whatever phase it is: during tuning, Ray Tune is asked
to stop as its own Ctrl-C handler would (through SIGUSR1, which Tune also listens to), so the
experiment state is saved and every finished trial row is kept; in any other phase `Interrupted`
is raised where the driver is. The driver then records `interrupted`, reads no test split, prints
the exact `--resume` command and exits 128 + the signal (130, 143). A second signal ends the
process at once, without a traceback, after recording `interrupted` (`on_second`): two quick
Ctrl-Cs must not leave a study that says it is still running.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from study.results.study_json import now

STATUSES = ("running", "interrupted", "failed", "finished")
# STUDY_FAULT_PAUSE=tuning,report: the driver waits before those phases (tests send signals then)
PAUSE, CONTINUE, PAUSE_S = "STUDY_FAULT_PAUSE", "STUDY_FAULT_CONTINUE", 120
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A BaseException, like KeyboardInterrupt: `except Exception` in the stages must not
    swallow it."""

    def __init__(self, signum: int, phase: str):
        super().__init__(f"{signal.Signals(signum).name} during {phase}")
        self.signum, self.phase = signum, phase

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Lifecycle:
    """The phase the driver is in, and the signal that stopped it (if one did)."""

    def __init__(self) -> None:
        self.phase = "checking"
        self.signum: int | None = None
        # what the driver records before a second signal ends the process (study.json's status)
        self.on_second: Callable[[str], None] | None = None

    def enter(self, phase: str) -> None:
        """Start `phase`; a signal received while tuning raises here, before the next phase."""
        self.check()
        self.phase = phase
        if phase in os.environ.get(PAUSE, "").split(","):
            # fault injection for the lifecycle tests: wait here for their signal, or until the
            # file STUDY_FAULT_CONTINUE names exists (they change something, then let it go on)
            print(f"-- paused before {phase} ({PAUSE})", flush=True)
            go_on = os.environ.get(CONTINUE)
            end = time.monotonic() + PAUSE_S
            while time.monotonic() < end and not (go_on and os.path.exists(go_on)):
                time.sleep(0.1)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum, self.phase)

    def install(self) -> None:
        """Take SIGINT and SIGTERM (again: ray.init installs Ray's own SIGTERM handler, which
        aborts the driver with a C++ stack trace)."""
        for s in SIGNALS:
            signal.signal(s, self._first if self.signum is None else self._second)

    def _first(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # Tune's interrupt puts this handler back for SIGINT
            self._second(signum, frame)
        self.signum = signum
        for s in SIGNALS:  # from now on, a signal ends the process at once
            signal.signal(s, self._second)
        tune_listens = signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None)
        if self.phase == "tuning" and tune_listens:
            # Tune's own interrupt: it stops the trials, saves its state, and fit() returns
            os.kill(os.getpid(), signal.SIGUSR1)
            return
        raise Interrupted(signum, self.phase)

    def _second(self, signum: int, frame: Any) -> None:
        reason = f"second {signal.Signals(signum).name} during {self.phase}: ended at once"
        for s in SIGNALS:  # a third one while recording: the record is best effort
            signal.signal(s, _exit_now)
        try:
            if self.on_second is not None:
                self.on_second(reason)
            print(f"interrupted: {reason}", file=sys.stderr, flush=True)
        finally:
            os._exit(128 + signum)


def _exit_now(signum: int, frame: Any) -> None:
    os._exit(128 + signum)


@contextmanager
def signals_stop(lifecycle: Lifecycle) -> Iterator[Lifecycle]:
    """SIGINT and SIGTERM handled as the module docstring says, inside the block."""
    # Tune's SIGINT handler would stop tuning and let fit() return as if it had finished
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    old = {s: signal.getsignal(s) for s in SIGNALS}
    lifecycle.install()
    try:
        yield lifecycle
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def mark(meta: dict[str, Any], status: str, reason: str = "") -> dict[str, Any]:
    """study.json with its status set now, and why."""
    assert status in STATUSES, status
    return {**meta, "status": status, "status_at": now(), "status_reason": reason}


def resume_command(name: str, storage: str) -> str:
    """The command that continues this study (settings, data and space come from study.json)."""
    args = ["python", "-m", "study.run", "--resume", "--name", name, "--storage", storage]
    return shlex.join(args)
