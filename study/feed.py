"""Batches from a split's uint8 array to the device: shuffled index batches, and a one-batch-ahead
prefetch that overlaps gathering and copying with the GPU's work."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
