"""What a study prints while it runs, so a user always knows where it stands.

- a message before each phase that is otherwise silent (checking the space, starting Ray,
  decoding, test evaluation and Grad-CAM, writing the report);
- a line when a trial starts (its model and sampled hyperparameters), one per epoch, one when it
  ends (how, and why);
- a status line when a trial ends and at least every 30 s: trials done (finished, stopped,
  diverged, errored), running and pending, the best score so far (trial, model), time elapsed
  and an estimate of the time left.

`-q` prints only the summary (leaderboard, report, errors); `-v` adds Ray Tune's own progress
table. Ray-free: the Tune callback that feeds `Progress` is
`study.tuning.callbacks.ConsoleCallback`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL
STATUS_EVERY_S = 30.0
ENDED = ("finished", "stopped", "diverged", "errored")


# Ray's notices about token authentication, logged by this logger as the driver starts a local
# Ray: "Token authentication is enabled ... Set RAY_AUTH_MODE=disabled to opt out" and "Generated
# new authentication token and saved to ...". Nothing to act on: -q leaves them out. The warning
# that authentication is *disabled* still prints.
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class _NoAuthNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        notice = record.levelno < logging.WARNING or record.getMessage().startswith(
            "Token authentication is enabled"
        )
        return not notice


_NO_AUTH_NOTICES = _NoAuthNotices()


def set_level(level: int) -> None:
    global _level
    _level = level
    # set on the logger by name before Ray is imported: Ray's own logging setup configures the
    # `ray` logger, not this child's filters
    auth = logging.getLogger(RAY_AUTH_LOGGER)
    if level == QUIET:
        auth.addFilter(_NO_AUTH_NOTICES)
    else:
        auth.removeFilter(_NO_AUTH_NOTICES)


def level() -> int:
    return _level


def say(message: str) -> None:
    """A progress message: printed unless -q."""
    if _level >= NORMAL:
        print(message, flush=True)


def phase(message: str) -> None:
    """The start of a phase that prints nothing until it ends."""
    say(f"-- {message}")


def duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def key_params(config: dict[str, Any], width: int = 140) -> str:
    """A trial's model and sampled hyperparameters, one line: 'googlenet, lr=0.0021, ...'."""
    sampled = dict(config.get("suggested") or {})
    head = str(config.get("model", sampled.get("model", "?")))
    parts = [f"{k}={_value(v)}" for k, v in sampled.items() if k != "model"]
    line = ", ".join([head, *parts])
    return line if len(line) <= width else line[: width - 3] + "..."


class Progress:
    """The study's state as the console reports it, fed by the Tune callback."""

    def __init__(
        self,
        total: int,
        metric: str,
        mode: str,
        every_s: float = STATUS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.metric, self.mode = total, metric, mode
        self.every_s, self.clock = every_s, clock
        self.reset()

    def reset(self) -> None:
        """A new run (a resumed driver starts its own clock and estimate)."""
        self.t0 = self.clock()
        self._last_status = self.t0
        self._changed = False
        self._last_line = ""
        self.ended_here = 0  # trials that ended in this run: the rate of the estimate
        self.best: tuple[float, str, str] | None = None  # value, trial, model
        self.models: dict[str, str] = {}

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best[0] if self.mode == "max" else value < self.best[0]

    def offer(self, trial_id: str, value: Any) -> None:
        """A score of a trial: the best so far if it beats the others."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return
        if self._better(v):
            self.best = (v, trial_id, self.models.get(trial_id, "?"))

    def started(self, trial_id: str, config: dict[str, Any], number: int) -> None:
        self.models[trial_id] = str(config.get("model", "?"))
        say(f"[{trial_id}] start (trial {number} of {self.total}): {key_params(config)}")

    def result(self, trial_id: str, config: dict[str, Any], r: dict[str, Any]) -> None:
        self.models.setdefault(trial_id, str(config.get("model", "?")))
        self.offer(trial_id, r.get(self.metric))
        say(
            f"[{trial_id}] epoch {r.get('epoch')}: train_loss {_num(r.get('train_loss'))} "
            f"val_acc {_num(r.get('val_acc'))} ({_num(r.get('epoch_s'), 1)} s, "
            f"{_num(r.get('images_per_s'), 0)} img/s)"
        )

    def ended(self, trial_id: str, status: str, reason: str) -> None:
        self.ended_here += 1
        self._changed = True
        say(f"[{trial_id}] {status}: {reason}")

    def status_line(self, counts: dict[str, int]) -> str:
        """'status: 3 of 10 trials done (...); 2 running, 5 pending; best ...; elapsed, left'."""
        done = sum(counts.get(k, 0) for k in ENDED)
        how = [f"{counts.get(k, 0)} {k}" for k in ENDED if k != "diverged" or counts.get(k)]
        running = counts.get("running", 0)
        parts = [
            f"status: {done} of {self.total} trials done ({', '.join(how)})",
            f"{running} running, {max(0, self.total - done - running)} pending",
        ]
        if self.best is not None:
            v, tid, model = self.best
            parts.append(f"best {self.metric} {v:.3f} ({tid}, {model})")
        elapsed = self.clock() - self.t0
        left = self.total - done
        if left <= 0:
            eta = "none left"
        elif self.ended_here:
            eta = f"~{duration(elapsed / self.ended_here * left)} left"
        else:
            eta = "time left known after the first trial ends"
        parts.append(f"{duration(elapsed)} elapsed, {eta}")
        return "; ".join(parts)

    def step(self, counts: dict[str, int], force: bool = False) -> None:
        """A status line when a trial ended since the last one, or every `every_s`."""
        now = self.clock()
        if force or self._changed or now - self._last_status >= self.every_s:
            self._changed, self._last_status = False, now
            line = self.status_line(counts)
            if line != self._last_line:  # the final one repeats the last trial's end
                self._last_line = line
                say(line)


def _num(v: Any, digits: int = 3) -> str:
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return "?"
