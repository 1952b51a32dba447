"""The real trial run in this process, without Ray, and the measurements built on it: shared by
pipeline.py, gpu_check.py/gpu_phases.py and the tests that time or probe a trial.

`inline_trial` calls `study.training.trial.run_trial` with a report that copies each checkpoint as
Ray's local storage does, so what is timed is the trial's own work; `measure_in_memory` is the same
model, optimiser and loss on tensors already on the device, the yardstick of (a)/(b).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import (  # noqa: E402 - run as a script from any directory
    cuda_peak_mb,
    peak_rss_mb,
    reset_cuda_peak,
    reset_peak_rss,
)
from study.data import SplitArrays  # noqa: E402
from study.training.config import TrainConfig
from study.training.steps import TrialData, autocast, loss_fn
from study.training.trial import run_trial, setup_trial

NUM_CLASSES = 7


class StopTrial(Exception):
    """Raised by inline_trial's report to end a trial early (gpu_check's fixed-duration trials)."""


def inline_trial(
    config: dict[str, Any],
    data: TrialData,
    storage: Path,
    on_start: Callable[[], None] | None = None,
    stop: Callable[[list[dict]], bool] | None = None,
    reports: list[dict] | None = None,
) -> list[dict]:
    """Run the trial in this process without Ray (`study.training.trial.run_trial`); returns its
    reports.

    Its report copies the checkpoint directory into `storage` (what Ray does with local storage)
    and records the metrics with the time of the call; `stop(reports)` true ends the trial there.
    The trial asks for checkpoints to resume from (there are none) once it has built its model
    and is about to train, so `on_start` there can line up the start of several trials
    (gpu_check's packing). Pass `reports` to keep what was reported when the trial raises."""
    reports = [] if reports is None else reports

    def report(metrics: dict, directory: Path) -> None:
        shutil.copytree(directory, storage / f"checkpoint_{len(reports):06d}")
        reports.append({**metrics, "_time": time.perf_counter()})
        if stop is not None and stop(reports):
            raise StopTrial

    def resume() -> list:
        if on_start is not None:
            on_start()
        reports.append({"_start": True, "_time": time.perf_counter()})
        return []

    try:
        run_trial(TrainConfig.from_config(config), data, report, resume)
    except StopTrial:
        pass
    return reports


def trial_config(
    model: str, size: int, batch_size: int, threads: int, aug: float, epochs: int = 2, **extra: Any
) -> dict[str, Any]:
    """A trial config; eager (compile False) unless `extra` says otherwise, so that (a) and (b)
    compare the same thing whatever compile "auto" would decide."""
    return {
        "model": model,
        "image_size": size,
        "batch_size": batch_size,
        "max_epochs": epochs,
        "seed": 0,
        "optimizer": "adam",
        "lr": 1e-3,
        "lr_schedule": "constant",
        "aug_strength": aug,
        "num_threads": threads,
        "compile": False,
        **extra,
    }


def epoch_rates(reports: list[dict], n_train: int) -> dict[str, float]:
    """(a) from the reports of epochs 2.. (epoch 1 is warm-up): see the module docstring."""
    ep = [r for r in reports if "epoch" in r]
    if len(ep) < 2:
        raise ValueError(f"need a warm-up and a timed epoch, the trial reported {len(ep)}")
    train_s = report_s = 0.0
    for prev, cur in zip(ep, ep[1:], strict=False):
        t_train = n_train / cur["images_per_s"]
        gap = cur.get("time_this_iter_s", cur["_time"] - prev["_time"])
        train_s += t_train
        report_s += gap - cur["epoch_s"]  # gap = train + val + everything after: reporting
    timed = len(ep) - 1
    return {
        "img_s": n_train * timed / (train_s + report_s),
        "train_img_s": n_train * timed / train_s,
        "report_s": report_s / timed,
    }


def measure_trainable(config: dict, data: TrialData, device: torch.device) -> dict[str, Any]:
    n = len(data.train.labels)
    reset_peak_rss()
    reset_cuda_peak(device)
    with tempfile.TemporaryDirectory() as d:
        reports = inline_trial(config, data, Path(d))
    return epoch_rates(reports, n) | {
        "rss_mb": peak_rss_mb(),
        "cuda_mb": cuda_peak_mb(device),
        "reports": [r for r in reports if "epoch" in r],
    }


def measure_in_memory(
    config: dict, data: TrialData, batches: int, device: torch.device
) -> dict[str, Any]:
    """(b): the model, optimiser and loss of the trainable on tensors already on the device."""
    cfg = TrainConfig.from_config(config)
    torch.backends.cudnn.benchmark = True  # as the trainable does
    from study.data import Augment, AugmentConfig

    norm = Augment(AugmentConfig(flip=0))
    bs = cfg.batch_size
    xs, ys = [], []
    for i in range(batches):
        x = torch.from_numpy(np.array(data.train.images[i * bs : (i + 1) * bs]))  # a writable copy
        x = norm(x.to(device), train=False)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        xs.append(x)
        ys.append(torch.from_numpy(data.train.labels[i * bs : (i + 1) * bs]).to(device))
    reset_peak_rss()
    reset_cuda_peak(device)
    t = setup_trial(cfg, data, device)  # the trial's model, optimiser and grad scaler
    model, opt, scaler = t.model, t.opt, t.scaler
    if cfg.compile is True:
        model = torch.compile(model)
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(device):
            logits = model(x)
            loss = loss_fn(model, logits, y, cfg, None)
            for aux in getattr(model, "aux_outputs", []):
                loss = loss + model.aux_weight * loss_fn(model, aux, y, cfg, None)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    t0 = time.perf_counter()
    step(xs[0], ys[0])  # warm-up: allocator, cudnn.benchmark's search, lazy init, compilation
    sync(device)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x, y in zip(xs, ys, strict=True):
        step(x, y)
    sync(device)
    dt = time.perf_counter() - t0
    return {
        "img_s": sum(len(y) for y in ys) / dt,
        "warmup_s": warmup_s,
        "rss_mb": peak_rss_mb(),
        "cuda_mb": cuda_peak_mb(device),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_split(n: int, size: int, seed: int = 0) -> SplitArrays:
    """Random uint8 images in memory (throughput does not depend on what the pixels show)."""
    rng = np.random.default_rng(seed)
    return SplitArrays(
        rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8),
        np.arange(n, dtype=np.int64) % NUM_CLASSES,
        [f"synthetic/{i}" for i in range(n)],
    )
