"""A trial that Ray gives a GPU trains on it or fails, never silently on the CPU.

A torch wheel built for a newer CUDA than the machine's NVIDIA driver supports (or a CPU-only
wheel) answers `torch.cuda.is_available()` with False and nothing else: the trial then picked the
CPU, the study exited 0 and trials.parquet said device=cpu, hours later. Two checks close that:
`check_worker_gpu` runs one small Ray task with the trials' GPU request before tuning (the driver
stops, one line, before any trial), and `require_cuda` fails a trial at once if its worker cannot
use the GPU Ray gave it (a node that joined later, another image).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import ray

from study import console

# Tests only: torch in this process (and the Ray workers that inherit it) acts as if CUDA were
# unusable. A Ray worker imports torch afresh, so a test cannot monkeypatch it there.
FAKE_NO_CUDA = "STUDY_FAKE_NO_CUDA"
# the probe waits this long before saying why: an autoscaling cluster starts a GPU node first
PROBE_NOTICE_S = 30.0
WHAT_TO_DO = (
    "install the torch build for a CUDA this driver supports (nvidia-smi shows the highest; "
    "https://pytorch.org/get-started/locally/) or update the NVIDIA driver; "
    "--gpus-per-trial 0 trains on CPUs on purpose"
)


class CudaUnusableError(RuntimeError):
    """Ray gave this process GPUs that its torch cannot use."""


def driver_version() -> str:
    """The NVIDIA driver's version on this machine, or "unknown" (no nvidia-smi, no driver)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines:
            return lines[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:  # the kernel module says it too, where nvidia-smi is not installed (slim images)
        with open("/proc/driver/nvidia/version") as f:
            words = f.readline().split()
        return next(w for w in words if w[:1].isdigit() and "." in w)
    except (OSError, StopIteration):
        return "unknown"


def cuda_facts() -> dict[str, Any]:
    """What this process's torch can do with CUDA, and why not (torch's own reason when it gives
    one: "The NVIDIA driver on your system is too old (found version 11040)")."""
    import torch

    fake = os.environ.get(FAKE_NO_CUDA) == "1"
    usable = not fake and torch.cuda.is_available()
    reason = ""
    if not usable and not fake:
        try:  # is_available() only says False; init() raises with the reason
            torch.cuda.init()
        except Exception as e:  # whatever torch raises: it is the message, not a failure here
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return {
        "usable": bool(usable),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,  # None: a CPU-only build
        "driver": driver_version(),
        "reason": reason,
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def unusable_message(who: str, facts: dict[str, Any]) -> str:
    """One line: who got which GPUs, torch's and the driver's versions, what to do."""
    why = f": {facts['reason']}" if facts["reason"] else ""
    cpu_only = "" if facts["cuda"] else " (a CPU-only build)"
    return (
        f"{who}, but torch {facts['torch']} there cannot use CUDA (torch.cuda.is_available() is "
        f"False{why}; torch.version.cuda={facts['cuda']}{cpu_only}; NVIDIA driver "
        f"{facts['driver']}; CUDA_VISIBLE_DEVICES={facts['visible']}): {WHAT_TO_DO}"
    )


def require_cuda(gpu_ids: list[Any], node: str) -> None:
    """In a trial: GPUs from Ray (`ray.get_gpu_ids()`) and a torch that cannot use them fail the
    trial now, instead of training it on the CPU."""
    if not gpu_ids:
        return
    facts = cuda_facts()
    if not facts["usable"]:
        who = f"Ray gave this trial GPU(s) {[str(i) for i in gpu_ids]} on {node}"
        raise CudaUnusableError(unusable_message(who, facts))


@ray.remote(max_retries=0)
def _probe() -> dict[str, Any]:
    """The device facts of one worker as a trial would get it."""
    return {
        **cuda_facts(),
        "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        "node": os.uname().nodename,
    }


def check_worker_gpu(gpus: float, cpus: float) -> str | None:
    """Before tuning: one Ray task with a trial's resources reports whether its torch can use the
    GPU Ray gives it. The problem as one line, or None (also when trials ask for no GPU)."""
    if not gpus:
        return None
    console.phase(f"checking that a worker's torch can use the {gpus:g} GPU(s) of each trial")
    ref = _probe.options(num_gpus=gpus, num_cpus=cpus).remote()
    ready, _ = ray.wait([ref], timeout=PROBE_NOTICE_S)
    if not ready:  # Tune would wait just as long for its first trial
        console.say(
            f"   waiting for a worker with {gpus:g} GPU(s) and {cpus:g} CPU(s) "
            "(an autoscaling cluster starts one; Ctrl-C stops)"
        )
    try:
        facts = ray.get(ref)
    except ray.exceptions.RayError as e:  # the worker could not even import torch
        last = (str(e).strip().splitlines() or [""])[-1]  # the worker's exception, last
        return f"a worker with {gpus:g} GPU(s) failed its device check ({type(e).__name__}: {last})"
    if facts["usable"]:
        return None
    who = (
        f"Ray gives each trial {gpus:g} GPU(s) (a worker on {facts['node']} got {facts['gpu_ids']})"
    )
    return unusable_message(who, facts) + "; stopped before any trial"
