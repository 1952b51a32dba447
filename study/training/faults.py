"""Fault injection for the fault-tolerance tests: a trial's `fault` config key, empty in studies.

`"nan@2"`: the loss becomes NaN in epoch 2. `"oom@1"`: CUDA out-of-memory in epoch 1, at any
micro-batch size. `"oom_above@8"`: CUDA out-of-memory whenever a micro-batch holds more than 8
images (a card that fits 8), in every epoch and attempt.
`"crash_corrupt@2"`: epoch 2's checkpoint is saved corrupt and the trial crashes after reporting
it (first attempt only). `"sleep=0.2"`: sleep per training batch (to kill a worker mid-epoch).
Combine with commas.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


def parse(spec: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.replace("=", "@").partition("@")
        if name not in ("nan", "oom", "oom_above", "crash_corrupt", "sleep") or not sep:
            raise ValueError(
                f"config fault={spec!r}: unknown fault {part!r} "
                "(expected nan@E, oom@E, oom_above@N, crash_corrupt@E, sleep=S)"
            )
        out[name] = float(value)
    return out


def in_batch(faults: dict[str, float], epoch: int, micro_batch: int) -> torch.Tensor | None:
    """Called once per training micro-batch; returns a loss override (NaN) or raises."""
    if "sleep" in faults:
        time.sleep(faults["sleep"])
    if faults.get("oom") == epoch:
        raise torch.OutOfMemoryError("CUDA out of memory (injected by config fault)")
    if micro_batch > faults.get("oom_above", float("inf")):
        raise torch.OutOfMemoryError(
            f"CUDA out of memory: micro-batch {micro_batch} > {faults['oom_above']:g} "
            "(injected by config fault)"
        )
    if faults.get("nan") == epoch:
        return torch.tensor(float("nan"))
    return None


def corrupt_checkpoint(
    faults: dict[str, float], epoch: int, restored: bool, ckpt_dir: Path
) -> None:
    """Spoil the checkpoint about to be reported (first attempt only)."""
    if faults.get("crash_corrupt") == epoch and not restored:
        (ckpt_dir / "last.pt").write_bytes(b"this is not a checkpoint")


def after_report(faults: dict[str, float], epoch: int, restored: bool) -> None:
    """...then crash, so the retry has to cope with the spoilt checkpoint."""
    if faults.get("crash_corrupt") == epoch and not restored:
        raise RuntimeError(f"injected crash after epoch {epoch} (its checkpoint is corrupt)")
