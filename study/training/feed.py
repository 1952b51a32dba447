"""Batches from a split's uint8 array to the device and results back: shuffled index batches, a
one-batch-ahead prefetch that overlaps gathering and copying with the GPU's work, the micro-batch
that fits the device, and running sums the host reads without waiting for the GPU."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from study.data import SplitArrays


def batches(n: int, batch_size: int, gen: torch.Generator | None) -> list[np.ndarray]:
    """Shuffled index batches when a generator is given, else in order (evaluation)."""
    order = torch.randperm(n, generator=gen).numpy() if gen is not None else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def to_device(arr: SplitArrays, idx: np.ndarray, device: torch.device):
    # fancy indexing copies the rows out of the memory map: the only per-batch data work
    x = torch.from_numpy(np.ascontiguousarray(arr.images[idx]))
    y = torch.from_numpy(arr.labels[idx])
    if device.type == "cuda":
        x, y = (
            x.pin_memory().to(device, non_blocking=True),
            y.pin_memory().to(device, non_blocking=True),
        )
    return x, y


def prefetched(arr: SplitArrays, order: list[np.ndarray], device: torch.device):
    """(idx, x, y) per batch. On CUDA a helper thread gathers, pins and copies batch i+1 while
    batch i trains (numpy's gather and pin_memory release the GIL); on CPU there is no GPU to
    overlap with, so batches are read in line."""
    if device.type != "cuda" or not order:
        for idx in order:
            yield (idx, *to_device(arr, idx, device))
        return
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(to_device, arr, order[0], device)
        for k, idx in enumerate(order):
            x, y = nxt.result()
            if k + 1 < len(order):
                nxt = pool.submit(to_device, arr, order[k + 1], device)
            yield idx, x, y


class DeviceSums:
    """Running sums of a training epoch, kept on the device and read by the host without waiting.

    `poll()` hands back sums that have already arrived on the host: on CUDA it queues a
    non-blocking copy into pinned memory and returns the values of an earlier copy once its event
    has completed (so a NaN check lags a poll or two behind, and never stalls the GPU); on CPU
    the copy is immediate. Values are read through a numpy view of the host buffer: plain host
    memory, no tensor read. `total()` is the one read that waits, at the end of the epoch.
    """

    def __init__(self, n: int, device: torch.device):
        self.sums = torch.zeros(n, device=device)
        self._cuda = device.type == "cuda"
        self._host = torch.zeros(n, pin_memory=self._cuda)
        self._view = self._host.numpy()
        self._event = torch.cuda.Event() if self._cuda else None
        self._queued = False  # a copy is in flight (or has landed and not been read)

    def add(self, values: torch.Tensor) -> None:
        self.sums += values

    def poll(self) -> np.ndarray | None:
        """The sums as of the latest copy that has landed, or None if none has yet."""
        if self._event is None:
            self._host.copy_(self.sums)
            return self._view.copy()
        if self._queued and not self._event.query():
            return None  # still in flight: its buffer must not be overwritten
        landed = self._view.copy() if self._queued else None
        self._host.copy_(self.sums, non_blocking=True)
        self._event.record()
        self._queued = True
        return landed

    def total(self) -> list[float]:
        return self.sums.tolist()


@dataclass
class BatchFit:
    """The micro-batch that fits the device. A CUDA out-of-memory error halves it and the same
    step is retried; the optimiser still steps once per `batch_size` images (gradients are
    accumulated over micro-batches), so the trial's batch size keeps its meaning. Only batch
    norm sees the smaller micro-batches; and a real OOM mid-forward has already updated batch
    norm's running statistics (and drawn dropout masks) once, which the retry does again."""

    batch_size: int
    micro: int = 0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.micro = self.micro or self.batch_size

    @property
    def floor(self) -> int:  # batch norm cannot train on one image
        return min(2, self.batch_size)

    @property
    def val_batch(self) -> int:
        """Validation's batch: with no gradients 128 images fit wherever the training micro-batch
        did, unless an out-of-memory error shrank it."""
        return min(128, self.micro) if self.notes else 128

    def shrink(self, epoch: int, error: BaseException) -> None:
        """Halve after an OOM, or re-raise it when nothing smaller can be tried."""
        if self.micro <= self.floor:
            raise torch.OutOfMemoryError(
                f"out of memory in epoch {epoch} even with micro-batches of {self.micro} "
                f"images: {str(error)[:300]}"
            ) from error
        old, self.micro = self.micro, max(self.floor, self.micro // 2)
        self.notes.append(
            f"CUDA out of memory at micro-batch {old} in epoch {epoch}: batch {self.batch_size} "
            f"now runs as micro-batches of {self.micro} with gradient accumulation"
        )
