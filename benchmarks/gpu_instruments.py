"""gpu_check.py's instruments: GPU utilisation from nvidia-smi, host reads counted by caller (the
CPU stand-in for torch's sync debug mode), the trainable's epochs split into data waits and
new-shape steps, and the goals with the one summary table. No Ray, Optuna or Plotly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._util import table
from benchmarks.harness import sync
from study.training import steps, trial

GOALS = {
    "googlenet224 (a) img/s": (">=", 4000.0),
    "ferg epoch s": ("<=", 10.0),
    "packing 4 vs 1": (">=", 2.5),
    "googlenet224 (a)/(b)": (">=", 0.95),
    "ferg first/steady epoch": ("<=", 1.5),
}
RATIO_GOAL = (">=", 0.95)  # every pipeline cell's (a)/(b)
# the rows of the final summary table: keys with a goal, and keys starting with these
HEADLINES = (
    "syncs in train_epoch",
    "host reads per training step",
    "ferg first epoch s",
    "ferg epoch1 ",
    "packing ",
    "compile",
    "study ",
)


def goal(name: str) -> tuple[str, float] | None:
    if name in GOALS:
        return GOALS[name]
    return RATIO_GOAL if name.endswith(" (a)/(b)") and "train-only" not in name else None


class SmiSampler:
    """GPU utilisation and memory from nvidia-smi every `every_s`, in a thread.

    One nvidia-smi call per sample rather than its own loop (-lms): through a pipe its output is
    block-buffered, so samples would arrive minutes late and be charged to the wrong phase.
    """

    def __init__(self, gpu_index: str = "0", every_s: float = 0.5):
        self.samples: list[tuple[float, float, float]] = []  # (perf_counter, util %, MiB used)
        self.error = ""
        self.every_s = every_s
        self._stop = threading.Event()
        exe = shutil.which("nvidia-smi")
        if exe is None:
            self.error = "nvidia-smi not found: utilisation not sampled"
            return
        self.cmd = [
            exe,
            f"--id={gpu_index}",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                out = subprocess.run(self.cmd, capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError) as e:
                self.error = f"nvidia-smi failed: {e}"
                return
            parsed = parse_smi_line(out.strip().splitlines()[0] if out.strip() else "")
            if parsed is not None:
                self.samples.append((t, *parsed))
            self._stop.wait(self.every_s)

    def window(self, t0: float, t1: float) -> dict[str, float]:
        util = [u for t, u, _ in self.samples if t0 <= t <= t1]
        mem = [m for t, _, m in self.samples if t0 <= t <= t1]
        if not util:
            return {}
        return {
            "util_mean": float(np.mean(util)),
            "util_max": max(util),
            "util_samples": len(util),
            "smi_mem_max": max(mem),
        }

    def close(self) -> None:
        self._stop.set()
        if not self.error:
            self._thread.join(timeout=15)


def parse_smi_line(line: str) -> tuple[float, float] | None:
    """'87, 12345' -> (87.0, 12345.0); None for lines that are not a sample ('[N/A]', noise)."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 2:
        return None
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        return None


def gpu_index() -> str:
    """nvidia-smi's index of the device torch uses (the first of CUDA_VISIBLE_DEVICES)."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return first if first.isdigit() else "0"


STUDY_DIR = Path(steps.__file__).resolve().parent
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__")


@contextmanager
def count_host_reads(package: Path = STUDY_DIR) -> Iterator[list[str]]:
    """Calls of tensor methods that hand a value to the host, made by code in `package`: each
    waits for the GPU when its tensor is on one. The CPU stand-in for torch's sync debug mode
    (which does nothing on CPU): it also counts reads of host tensors, so compare counts (per
    step), not absolute numbers. Lists "file:function method" per call."""
    calls: list[str] = []
    saved = {name: (getattr(torch.Tensor, name), name in vars(torch.Tensor)) for name in HOST_READS}

    def wrap(name: str, fn: Any) -> Any:
        def reader(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(str(package)):
                calls.append(f"{Path(caller.co_filename).name}:{caller.co_name} {name}")
            return fn(self, *args, **kwargs)

        return reader

    for name, (fn, _) in saved.items():
        setattr(torch.Tensor, name, wrap(name, fn))
    try:
        yield calls
    finally:
        for name, (fn, own) in saved.items():
            if own:
                setattr(torch.Tensor, name, fn)
            else:  # inherited from torch's C base class: drop the override
                delattr(torch.Tensor, name)


@contextmanager
def watching_train_epoch(watch: Any) -> Iterator[None]:
    """Runs every train_epoch of the trial inside the context manager `watch()` (patched where
    `study.training.trial.Training.train` looks it up)."""
    original = trial.train_epoch

    def watched(*args: Any, **kwargs: Any) -> Any:
        with watch():
            return original(*args, **kwargs)

    trial.train_epoch = watched
    try:
        yield
    finally:
        trial.train_epoch = original


@contextmanager
def profile_epochs(device: torch.device) -> Iterator[list[dict[str, float]]]:
    """Splits each training epoch of the trainable: seconds its loop waited for the next batch
    (gather, pin, queue the upload), and the steps whose batch shape is new to the trial (cuDNN's
    algorithm search and lazy set-up happen there), each timed between two synchronisations;
    the rest is the other steps. Only the new-shape steps add syncs."""
    rows: list[dict[str, float]] = []
    shapes: set[tuple[int, ...]] = set()
    # patched where they are looked up: train_epoch's and Training.train's globals (trial)
    step, feed, epoch = trial.train_step, trial.prefetched, trial.train_epoch

    def timed_step(model: Any, x: torch.Tensor, *args: Any) -> Any:
        if tuple(x.shape) in shapes or not rows:
            return step(model, x, *args)
        shapes.add(tuple(x.shape))
        sync(device)
        t0 = time.perf_counter()
        out = step(model, x, *args)
        sync(device)
        rows[-1]["new-shape steps"] += 1
        rows[-1]["new-shape s"] += time.perf_counter() - t0
        return out

    def timed_feed(*args: Any) -> Iterator[Any]:
        it = feed(*args)
        while True:
            t0 = time.perf_counter()
            item = next(it, None)
            if rows and rows[-1]["training"]:
                rows[-1]["data wait s"] += time.perf_counter() - t0
            if item is None:
                return
            yield item

    def timed_epoch(*args: Any, **kwargs: Any) -> Any:
        rows.append({"training": 1.0, "data wait s": 0.0, "new-shape steps": 0, "new-shape s": 0.0})
        t0 = time.perf_counter()
        try:
            return epoch(*args, **kwargs)  # ends with the epoch's one read of the device
        finally:
            rows[-1]["training"] = 0.0
            rows[-1]["train s"] = time.perf_counter() - t0
            rows[-1]["other steps s"] = (
                rows[-1]["train s"] - rows[-1]["data wait s"] - rows[-1]["new-shape s"]
            )

    trial.train_step, trial.prefetched = timed_step, timed_feed
    trial.train_epoch = timed_epoch
    try:
        yield rows
    finally:
        trial.train_step, trial.prefetched, trial.train_epoch = step, feed, epoch


def met(name: str, value: Any, cpu: bool) -> str:
    """'met' / 'MISSED' against the GPU goal of `name`; '' without one (or on CPU)."""
    g = goal(name)
    if cpu or g is None or not isinstance(value, int | float) or value != value:
        return ""
    op, target = g
    return "met" if (value >= target if op == ">=" else value <= target) else "MISSED"


def verdict(name: str, value: Any, cpu: bool) -> str:
    status = met(name, value, cpu)
    if not status:
        return ""
    op, target = goal(name)  # type: ignore[misc]
    return f"   (goal {op} {target:g}: {status})"


def shown(value: Any) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else "-" if value is None else str(value)


def summary_table(results: dict[str, Any], cpu: bool) -> str:
    """One table of the headline figures: everything with a goal, syncs, the first epoch,
    packing, compile and the study estimate (GPU utilisation samples are left to the SUMMARY
    lines). CPU figures are not judged: no target column then."""
    rows = []
    for k, v in results.items():
        g = goal(k)
        if " gpu " in k or (g is None and not k.startswith(HEADLINES)):
            continue
        row = {"measure": k, "value": shown(v)}
        if not cpu:
            row |= {"goal": f"{g[0]} {g[1]:g}" if g else "", "status": met(k, v, cpu)}
        rows.append(row)
    return table(rows, "gpu_check: headline figures" + (" (CPU sizes, not judged)" if cpu else ""))
