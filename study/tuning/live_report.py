"""The report of a running study, rewritten as trials finish: a Ray Tune callback in the driver.

It rebuilds ``reports/<study>/index.html`` at most every ``every_s`` seconds, after ResultsWriter
(listed before it) has flushed the tables, so a user can open the page during a long study; the
page says "running: k of N trials done" and reloads itself until study.json records the end. A
report that fails is one logged line: the study goes on.

The page is built on a thread of its own: a build takes about a second, and on Tune's callback
thread that second stalled the whole study loop (Ray printed "callbacks.on_step_end took 1.0 s").
At most one build runs at a time; a rewrite asked for meanwhile waits for the next step. The last
one (on_experiment_end) waits for a running build, then builds in the caller's thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ray import tune

log = logging.getLogger(__name__)


DEFAULT_EVERY_S = 60.0


class LiveReport(tune.Callback):
    """Rewrites the study's report during the run, throttled; never raises into Tune."""

    def __init__(
        self,
        study_dir: str,
        out_dir: str,
        every_s: float = DEFAULT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        build: Callable[..., Any] | None = None,
    ):
        self.study_dir, self.out_dir = study_dir, out_dir
        self.every_s = float(every_s)
        self.clock = clock
        self.build = build  # None: study.report.build_report (imported when first needed)
        self.builds = self.failures = 0
        self._last = -math.inf
        self._pending = False
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state; a thread does not pickle
        return {**self.__dict__, "_thread": None}

    def setup(self, **info: Any) -> None:
        # a resumed driver unpickles this with another process's clock reading: start afresh
        self._last, self._pending = -math.inf, False

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Until the build in flight (if any) has finished."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _rebuild(self, force: bool = False) -> None:
        now = self.clock()
        if force:
            self.wait()
        elif now - self._last < self.every_s or self.busy():
            self._pending = True  # written by the first on_step_end after the quiet period
            return
        self._last, self._pending = now, False
        if force:
            self._build()
        else:
            self._thread = threading.Thread(target=self._build, name="live-report", daemon=True)
            self._thread.start()

    def _build(self) -> None:
        try:
            build = self.build
            if build is None:
                from study.report import build_report as build

            build(
                self.study_dir,
                self.out_dir,
                refresh_s=max(10, round(self.every_s)),
                log_notes=False,
            )
            self.builds += 1
        except Exception as exc:  # noqa: BLE001 - whatever breaks the report must not stop the study
            self.failures += 1
            log.warning(
                "live report not written (%s: %s); the study goes on",
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._pending = True  # new epochs: worth a rewrite once the quiet period has passed

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._rebuild()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._rebuild()

    def on_step_end(self, iteration, trials, **info):  # Tune calls it after every loop step
        if self._pending and self.clock() - self._last >= self.every_s and not self.busy():
            self._rebuild()

    def on_experiment_end(self, trials, **info):
        self._rebuild(force=True)  # the final counts, before the test-split evaluation


def live_report_callbacks(study_dir: str, out_dir: str | None) -> list[tune.Callback]:
    """[LiveReport] when the run writes a report (``out_dir``), else nothing."""
    return [] if out_dir is None else [LiveReport(study_dir, out_dir)]
