"""Whether a trial compiles its model (`torch.compile`): the config's `compile` True/False, or
"auto", which compiles on CUDA when the time saved over the trial's remaining steps exceeds the
compile time. The decision and its numbers are reported with every epoch (keys `compile`,
`compile_reason`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

# measured on one H200 (benchmarks/results/gpu_check_h200_1_full.log): compiling GoogLeNet-224
# took 88 s with its first step and made the step 1.44x faster; "auto" assumes the same for any
# model until benchmarks/gpu_check.py's compile phase measures more
COMPILE_S, COMPILE_SPEEDUP = 88.0, 1.44


def decide_compile(
    eager_step_s: float, compiled_step_s: float, compile_s: float, planned_steps: int
) -> tuple[bool, str]:
    """Compile when the time it saves over the steps still planned exceeds the time it costs."""
    saved = planned_steps * (eager_step_s - compiled_step_s)
    numbers = (
        f"{planned_steps} planned steps x ({eager_step_s * 1e3:.2f} - "
        f"{compiled_step_s * 1e3:.2f} ms) = {saved:.0f} s saved vs {compile_s:.0f} s to compile"
    )
    if not all(map(math.isfinite, (eager_step_s, compiled_step_s, compile_s))):
        return False, f"off, not timed: {numbers}"
    return (True, f"pays: {numbers}") if saved > compile_s else (False, f"does not pay: {numbers}")


def compile_choice(
    setting: bool | str, device: torch.device, eager_step_s: float | None, planned_steps: int
) -> tuple[bool, str]:
    """The trial's compile decision and why: the config's True/False, or "auto".

    `planned_steps` are the trial's remaining steps up to max_epochs: a trial does not know
    ASHA's rungs, and one stopped at the first rung never earns the compile time back, so
    "auto" can compile where it will not pay (the runner could pass the expected epochs)."""
    if isinstance(setting, bool):
        return setting, f"compile={setting} in the config"
    if device.type != "cuda":
        return False, "auto: off on CPU (compiling takes minutes there)"
    if eager_step_s is None:
        return False, "auto: off, the epoch was too short to time a step"
    on, why = decide_compile(eager_step_s, eager_step_s / COMPILE_SPEEDUP, COMPILE_S, planned_steps)
    return on, f"auto: {why} (assumed {COMPILE_SPEEDUP}x faster after {COMPILE_S:.0f} s)"


@dataclass
class StepProbe:
    """Times the eager steps of a run's first epoch for compile "auto": one sync before step
    `skip` and one before step `skip + steps` (or the last step, which may be a partial batch
    with a new shape), once per trial. The first steps pay cuDNN's algorithm search."""

    skip: int = 2
    steps: int = 30
    step_s: float | None = None
    steps_per_epoch: int = 0
    _t0: float = 0.0

    def at(self, step: int, n_steps: int, device: torch.device) -> None:
        self.steps_per_epoch = n_steps
        stop = min(self.skip + self.steps, n_steps - 1)
        if stop <= self.skip or step not in (self.skip, stop):
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step == self.skip:
            self._t0 = time.perf_counter()
        else:
            self.step_s = (time.perf_counter() - self._t0) / (stop - self.skip)
