"""What the benchmark scripts share: peak memory, side-by-side tables, the toon data set, and
counting image decodes in every process of a Ray study.

Only the standard library is imported at module level: `install_decode_counter` runs from a
generated sitecustomize in every Python process of a study (Ray's own daemons included), and
gpu_check must import this on a machine that has no Ray.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DECODE_LOG_ENV = "STUDY_BENCH_DECODE_LOG"


# ---------------------------------------------------------------------------------------- memory
def reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux: writing 5 to clear_refs resets VmHWM).

    getrusage's ru_maxrss never goes down, so without this every row of a table would show the
    peak of the biggest row measured before it.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: peak_rss_mb falls back to the lifetime peak


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory in MiB since the last reset (VmHWM), else getrusage's lifetime peak."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if pid != "self":
        return float("nan")
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # macOS reports bytes


def reset_cuda_peak(device: Any) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mb(device: Any) -> float | None:
    """CUDA max allocated (MiB) since the last reset; None on CPU."""
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


class ProcPeakSampler:
    """Peak RSS of one process and of its descendants whose title starts with a prefix, sampled.

    Trials run in Ray worker processes (titled `ray::ImplicitFunc.train`), so their peak cannot be
    read from the benchmark's own process; VmHWM is each process's own peak, so sampling every
    `every_s` misses nothing but the last moments of a process that dies between samples.
    Other sessions' Ray workers on the same host are excluded by ancestry.
    """

    def __init__(self, root_pid: int, prefix: str = "ray::", every_s: float = 0.5):
        self.root_pid, self.prefix, self.every_s = root_pid, prefix, every_s
        self.peaks: dict[int, tuple[str, float]] = {}  # pid -> (title, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcPeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> None:
        parents: dict[int, int] = {}
        titles: dict[int, str] = {}
        for p in Path("/proc").glob("[0-9]*"):
            try:
                stat = (p / "stat").read_text()
                parents[int(p.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
                titles[int(p.name)] = (
                    (p / "cmdline")
                    .read_bytes()
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                    .strip()
                )
            except (OSError, ValueError):
                continue  # the process ended while we looked
        for pid, title in titles.items():
            mine = pid == self.root_pid or (
                title.startswith(self.prefix) and self._descends(pid, parents)
            )
            if not mine:
                continue
            mb = peak_rss_mb(pid)
            if mb == mb and mb > self.peaks.get(pid, ("", 0.0))[1]:  # mb == mb: not NaN
                self.peaks[pid] = (title, mb)

    def _descends(self, pid: int, parents: dict[int, int]) -> bool:
        for _ in range(64):  # a process tree is never this deep; guards against pid reuse loops
            if pid == self.root_pid:
                return True
            if pid not in parents or pid <= 1:
                return False
            pid = parents[pid]
        return False

    def peak(self, title_prefix: str | None = None) -> float:
        """Largest peak among processes whose title starts with `title_prefix`, or of the root
        process itself when None (NaN if none was seen)."""
        if title_prefix is None:
            return self.peaks.get(self.root_pid, ("", float("nan")))[1]
        vals = [
            mb
            for pid, (t, mb) in self.peaks.items()
            if t.startswith(title_prefix) and pid != self.root_pid
        ]
        return max(vals) if vals else float("nan")


# ---------------------------------------------------------------------------------------- tables
def table(rows: list[dict[str, Any]], title: str, digits: int = 2) -> str:
    """A side-by-side table (pandas does the layout); NaN/None print as '-'."""
    import pandas as pd

    df = pd.DataFrame([{k: float("nan") if v is None else v for k, v in r.items()} for r in rows])
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        body = df.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:,.{digits}f}")
    rule = "-" * max(len(line) for line in body.splitlines())
    return f"\n{title}\n{rule}\n{body}\n{rule}"


def ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b or a != a or b != b:
        return float("nan")
    return a / b


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


# -------------------------------------------------------------------------------------- data set
def prepare_toon(data_dir: Path, source: str) -> Any:
    """The embedded toon set prepared under data_dir (reused if already there)."""
    from study.data import open_dataset, prepare

    prepare("toon", source=source, data_dir=data_dir, seed=0)
    return open_dataset(data_dir, "toon")


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 3600
) -> tuple[float, int, ProcPeakSampler]:
    """`python -m study.run ARGS` as a child; returns (wall s, pid, peaks of its Ray processes).

    Its output goes to our stdout so a long study shows progress; the caller checks the
    return code through the study's files.
    """
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.run", *args], cwd=cwd, env={**os.environ, **(env or {})}
    )
    with ProcPeakSampler(proc.pid) as sampler:
        rc = proc.wait(timeout=timeout)
    if rc != 0:
        raise RuntimeError(f"python -m study.run {' '.join(args)} exited with {rc}")
    return time.perf_counter() - t0, proc.pid, sampler


# ------------------------------------------------------------------------------ decode counting
def decode_counter_env(site_dir: Path, log: Path) -> dict[str, str]:
    """Environment for a child whose every Python process counts decodes into `log`.

    A generated sitecustomize on PYTHONPATH runs at start-up in every interpreter that inherits
    this environment: the study driver and the Ray workers it starts.
    """
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / "sitecustomize.py").write_text(
        "from benchmarks._util import install_decode_counter\ninstall_decode_counter()\n"
    )
    path = [str(site_dir), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in path if p), DECODE_LOG_ENV: str(log)}


def install_decode_counter() -> None:
    """Wrap study.data.decode.decode_rgb, when it is first imported, to log every call.

    Done by an import hook so that processes which never decode (Ray's daemons) never pay for
    importing the data stack; the wrapper is in place before study.data.store binds the name.
    """
    log = os.environ.get(DECODE_LOG_ENV)
    if not log:
        return
    import importlib.abc
    import importlib.util

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "study.data.decode":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_wrap(module: Any) -> None:
                exec_module(module)
                module.decode_rgb = _counting(module.decode_rgb, Path(log))

            spec.loader.exec_module = exec_and_wrap  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Hook())


def _counting(fn: Any, log: Path) -> Any:
    import hashlib

    lock = threading.Lock()

    def decode_rgb(data: bytes) -> Any:  # the wrapped function's signature
        img = fn(data)
        rec = {
            "pid": os.getpid(),
            "process": _process_title(),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        with lock, log.open("a") as f:  # one short O_APPEND write per line: processes never mix
            f.write(json.dumps(rec) + "\n")
        return img

    return decode_rgb


def _process_title() -> str:
    """What `ps` shows: Ray titles its workers by what they run (`ray::ImplicitFunc.train` for a
    trial, `ray::evaluate_on_test` for the test evaluation); unlike Ray's runtime context this
    also works in the thread pool that decodes."""
    try:
        title = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0]
        return title.decode(errors="replace").strip()
    except OSError:
        return " ".join(sys.argv)[:80]
