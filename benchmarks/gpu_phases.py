"""gpu_check.py's measurements, one function per phase (gpu_check.py runs them and sums up).

Each takes the run's Sizes (gpu_check.GPU, or gpu_check.CPU for the reduced --cpu run) and the
device, trains through the real trial (benchmarks/harness.py's inline_trial, no Ray) on
synthetic data, and returns its headline figures by name. The packing phase, which starts worker
processes of gpu_check.py itself, lives there.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import (  # noqa: E402 - run as a script from any directory
    cuda_peak_mb,
    ratio,
    reset_cuda_peak,
    table,
)
from benchmarks.gpu_instruments import (  # noqa: E402
    count_host_reads,
    profile_epochs,
    watching_train_epoch,
)
from benchmarks.harness import (  # noqa: E402
    NUM_CLASSES,
    epoch_rates,
    inline_trial,
    measure_in_memory,
    measure_trainable,
    synthetic_split,
    trial_config,
)
from benchmarks.study_cost import (  # noqa: E402
    GOOGLENET_FERG,
    asha_epochs,
    ferg_split_images,
    study_gpu_hours,
)
from study.training.compiling import decide_compile
from study.training.steps import TrialData

CLASSES = [str(i) for i in range(NUM_CLASSES)]


@dataclass(frozen=True)
class Sizes:
    big_model: str  # the headline model ("googlenet" = the seed's)
    big_size: int
    batch: int
    batches: int  # per timed epoch of the googlenet224 and pipeline phases
    cells: tuple[tuple[str, int], ...]  # the pipeline phase's (model, px)
    ferg_model: str
    ferg_images: int
    ferg_size: int
    pack_config: dict[str, Any]  # one small trial of the packing phase
    pack_n: int  # trials sharing the device (4 = --gpus-per-trial 0.25)
    pack_images: int
    pack_seconds: float
    threads: int
    compile: bool
    fit_batch: int  # batch_fit phase: a batch size too big for...
    fit_cap_gib: float  # ...this much device memory (CUDA), or the injected fault (--cpu)
    study_model: str  # ferg_study and compile phases: a googlenet_ferg trial...
    study_size: int
    study_batches: tuple[int, ...]
    study_steps: int  # ...timed over this many steps per epoch
    aug: float = 0.5


# 96 batches per timed epoch: a checkpoint + report per epoch (~0.2 s) is part of (a), and real
# epochs (FERG: 215 batches) amortise it; 24 batches would charge it 4x more than any real study


def synthetic(n: int, size: int, seed: int = 0) -> TrialData:
    """n training and min(n, 1024) validation images; tiled from 1,024 random ones when large,
    because generating 8 GB of random bytes would take longer than the epoch itself."""
    if n <= 1024:
        train = synthetic_split(n, size, seed)
    else:
        base = synthetic_split(1024, size, seed)
        train = type(base)(
            np.resize(base.images, (n, 3, size, size)),
            np.arange(n, dtype=np.int64) % NUM_CLASSES,
            [""] * n,
        )
    return TrialData(train, synthetic_split(min(n, 1024), size, seed + 1), CLASSES)


def describe(device: torch.device) -> str:
    parts = [f"torch {torch.__version__}", f"device {device}"]
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        parts += [
            p.name,
            f"{p.total_memory / 2**30:.0f} GiB",
            f"sm {p.major}.{p.minor}",
            f"bf16 {torch.cuda.is_bf16_supported()}",
            f"cudnn {torch.backends.cudnn.version()}",
        ]
    return ", ".join(parts) + f"; {os.cpu_count()} CPUs"


# ------------------------------------------------------------------------------------- phases
def phase_big(s: Sizes, device: torch.device) -> dict[str, Any]:
    cfg = trial_config(s.big_model, s.big_size, s.batch, s.threads, s.aug)
    data = synthetic(s.batch * s.batches, s.big_size)
    a = measure_trainable(cfg, data, device)
    b = measure_in_memory(cfg, data, s.batches, device)
    k = f"{s.big_model}{s.big_size}"  # "googlenet224" on a GPU, smaller with --cpu
    return {
        f"{k} (a) img/s": a["img_s"],
        f"{k} (b) img/s": b["img_s"],
        f"{k} (a)/(b)": ratio(a["img_s"], b["img_s"]),
        f"{k} train-only (a) img/s": a["train_img_s"],
        f"{k} train-only (a)/(b)": ratio(a["train_img_s"], b["img_s"]),
        f"{k} report s/epoch": a["report_s"],
        f"{k} RSS MiB": a["rss_mb"],
        f"{k} CUDA MiB": a["cuda_mb"],
    }


def host_reads_in_epoch(s: Sizes, steps: int) -> list[str]:
    """Host reads by study code inside one training epoch of `steps` steps (CPU stand-in)."""
    cfg = trial_config("vanilla_cnn", 32, 4, s.threads, s.aug, epochs=1, width=4)
    data = TrialData(synthetic_split(4 * steps, 32), synthetic_split(4, 32, 1), CLASSES)
    calls: list[str] = []

    @contextmanager
    def watch() -> Iterator[None]:
        with count_host_reads() as c:
            yield
        calls.extend(c)

    with tempfile.TemporaryDirectory() as d, watching_train_epoch(watch):
        inline_trial(cfg, data, Path(d))
    return calls


def phase_syncs(s: Sizes, device: torch.device) -> dict[str, Any]:
    """Host-device synchronisations in the training loop of the trainable, counted by torch's
    sync debug mode (each one stops the CPU from queueing work ahead of the GPU). Only
    train_epoch is watched: validation and the checkpoint (copies to the host) sync by nature,
    once per epoch. Eager (compile=False), so that compile "auto"'s timing probe is not counted.
    On CPU: host reads by study code per training step, from epochs of 2 and 6 steps."""
    if device.type != "cuda":
        short, long = host_reads_in_epoch(s, 2), host_reads_in_epoch(s, 6)
        print(f"host reads in a 6-step epoch: {long}", flush=True)
        return {
            "host reads per training step (CPU proxy)": (len(long) - len(short)) / 4,
            "host reads per training epoch (CPU proxy)": len(short),
        }
    steps = 32
    cfg = trial_config(s.big_model, 112, s.batch, s.threads, s.aug, epochs=1)
    data = synthetic(s.batch * steps, 112)

    @contextmanager
    def watch() -> Iterator[None]:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tempfile.TemporaryDirectory() as d, watching_train_epoch(watch):
            inline_trial(cfg, data, Path(d))
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    print(f"syncs: {len(syncs)} in one training epoch of {steps} steps", flush=True)
    for message in sorted(set(syncs)):
        print(f"  sync: {message[:200]}", flush=True)
    return {f"syncs in train_epoch ({steps} steps)": len(syncs)}


def phase_ferg(s: Sizes, device: torch.device) -> dict[str, Any]:
    cfg = trial_config(s.ferg_model, s.ferg_size, s.batch, s.threads, s.aug)
    t0 = time.perf_counter()
    data = synthetic(s.ferg_images, s.ferg_size)
    made = time.perf_counter() - t0
    with profile_epochs(device) as rows:
        a = measure_trainable(cfg, data, device)
    first, second = a["reports"][0], a["reports"][1]
    train_s = s.ferg_images / second["images_per_s"]
    first_s = s.ferg_images / first["images_per_s"]
    print(
        table(
            [
                {"epoch": i + 1, **{k: v for k, v in r.items() if k != "training"}}
                for i, r in enumerate(rows)
            ],
            "ferg_epoch: where the training time goes",
        ),
        flush=True,
    )
    out = {
        "ferg epoch s": train_s,
        "ferg epoch incl val s": second["epoch_s"],
        "ferg first epoch s": first_s,
        "ferg first/steady epoch": ratio(first_s, train_s),
        "ferg img/s": second["images_per_s"],
        "ferg data gen s": made,
        "ferg RSS MiB": a["rss_mb"],
        "ferg CUDA MiB": a["cuda_mb"],
    }
    for i, r in enumerate(rows[:2]):
        out |= {
            f"ferg epoch{i + 1} {k}": r[k]
            for k in ("data wait s", "new-shape steps", "new-shape s", "other steps s")
        }
    return out


def study_rates(s: Sizes, device: torch.device, batch: int, **extra: Any) -> dict[str, float]:
    """A googlenet_ferg-sized trial (the seed's GoogLeNet at the space's image size) for two
    epochs of `study_steps` steps and a partial last batch (as FERG's split has: a second batch
    shape, so a second cuDNN search or compilation): first and steady training seconds,
    validation img/s and the checkpoint + report seconds of an epoch."""
    cfg = trial_config(s.study_model, s.study_size, batch, s.threads, s.aug, **extra)
    data = synthetic(batch * s.study_steps + batch // 2, s.study_size)
    a = measure_trainable(cfg, data, device)
    n = len(data.train.labels)
    first, steady = (n / r["images_per_s"] for r in a["reports"][:2])
    val_s = a["reports"][1]["epoch_s"] - steady
    return {
        "batch": batch,
        "first s": first,
        "steady s": steady,
        "train img/s": n / steady,
        "val img/s": ratio(len(data.val.labels), val_s),
        "report s": a["report_s"],
        "steps": -(-n // batch),
    }


def phase_ferg_study(s: Sizes, device: torch.device) -> dict[str, Any]:
    """The GPU-hours of a 64-trial googlenet_ferg ASHA study, trials one at a time, from the
    epoch time measured at each of the space's batch sizes (their mean: the sampler draws all)."""
    plan = GOOGLENET_FERG
    n_train, n_val = ferg_split_images()
    rows = []
    for batch in s.study_batches:
        r = study_rates(s, device, batch)
        r["FERG epoch s"] = n_train / r["train img/s"] + n_val / r["val img/s"] + r["report s"]
        r["first-epoch extra s"] = r["first s"] - r["steady s"]
        rows.append(r)
    print(
        table(
            rows,
            f"ferg_study: {s.study_model} at {s.study_size} px, FERG's split "
            f"{n_train:,} train / {n_val:,} val images",
        ),
        flush=True,
    )
    epoch_s = float(np.mean([r["FERG epoch s"] for r in rows]))
    extra = float(np.mean([r["first-epoch extra s"] for r in rows]))
    epochs = asha_epochs(plan)
    hours = study_gpu_hours(epochs, epoch_s, plan.num_samples, extra)
    print(
        f"estimate: a {plan.num_samples}-trial googlenet_ferg ASHA study (max {plan.max_epochs}"
        f" epochs, grace {plan.grace_period}, reduction {plan.reduction_factor}) trains about "
        f"{epochs:.0f} epochs at {epoch_s:.1f} s: {hours:.2f} GPU-hours on one "
        f"{describe(device).split(', ')[2] if device.type == 'cuda' else 'CPU'}, trials one at "
        f"a time: python -m study.run --space googlenet_ferg --num-samples "
        f"{plan.num_samples} --gpus-per-trial 1",
        flush=True,
    )
    return {
        "study FERG epoch s": epoch_s,
        "study first-epoch extra s": extra,
        "study ASHA epochs": epochs,
        "study GPU-hours": hours,
    }


def phase_pipeline(s: Sizes, device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = []
    for model, px in s.cells:
        cfg = trial_config(model, px, s.batch, s.threads, s.aug)
        data = synthetic(s.batch * s.batches, px)
        a = measure_trainable(cfg, data, device)
        b = measure_in_memory(cfg, data, s.batches, device)
        rows.append(
            {
                "model": model,
                "px": px,
                "(a) img/s": a["img_s"],
                "(b) img/s": b["img_s"],
                "(a)/(b)": ratio(a["img_s"], b["img_s"]),
                "train-only (a)/(b)": ratio(a["train_img_s"], b["img_s"]),
                "report s/epoch": a["report_s"],
                "RSS MiB": a["rss_mb"],
                "CUDA MiB": a["cuda_mb"],
            }
        )
        out[f"{model}{px} (a)/(b)"] = rows[-1]["(a)/(b)"]
    print(table(rows, f"pipeline on {device.type}, batch {s.batch}"), flush=True)
    return out


def phase_batch_fit(s: Sizes, device: torch.device) -> dict[str, Any]:
    """Train with a batch that cannot fit; the trainable must shrink its micro-batch and go on."""
    extra: dict[str, Any] = {}
    if device.type == "cuda":  # a real allocator limit: allocations past it raise OutOfMemoryError
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(s.fit_cap_gib * 2**30 / total, index)
    else:  # no OOM on CPU: a card that fits a quarter of the batch
        extra["fault"] = f"oom_above@{s.fit_batch // 4}"
    cfg = trial_config(s.big_model, s.big_size, s.fit_batch, s.threads, s.aug, **extra)
    data = synthetic(s.fit_batch * 2, s.big_size)
    reset_cuda_peak(device)
    try:
        with tempfile.TemporaryDirectory() as d:
            reports = inline_trial(cfg, data, Path(d))
    finally:
        if device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, index)
            torch.cuda.empty_cache()
    last = [r for r in reports if "epoch" in r][-1]
    print(f"batch_fit notes: {last['restore_note']}", flush=True)
    if last["end_reason"] != "max_epochs":
        why = last["error"] or last["end_reason"]
        raise RuntimeError(f"the trial did not train through: {why}")
    rate = epoch_rates(reports, s.fit_batch * 2)
    return {
        "batch_fit batch": s.fit_batch,
        "batch_fit memory cap GiB": s.fit_cap_gib or None,
        "batch_fit micro-batch": last["micro_batch"],
        "batch_fit (a) img/s": rate["img_s"],
        "batch_fit CUDA MiB": cuda_peak_mb(device),
    }


def phase_compile(s: Sizes, device: torch.device) -> dict[str, Any]:
    """The trainable eager vs compile=True at a googlenet_ferg trial's size (the middle batch
    size): the compile time (the compiled first epoch's extra seconds over the eager one), the
    steady speedup, and whether compiling pays back for that study's mean trial and for a trial
    that runs all its epochs (what compile "auto" decides from study.training.compiling's
    constants)."""
    batch = s.study_batches[len(s.study_batches) // 2]
    eager = study_rates(s, device, batch, compile=False)
    compiled = study_rates(s, device, batch, compile=True)
    compile_s = compiled["first s"] - eager["first s"]
    step_eager, step_compiled = (r["steady s"] / r["steps"] for r in (eager, compiled))
    plan = GOOGLENET_FERG
    steps_per_epoch = -(-ferg_split_images()[0] // batch)
    out = {
        "compile s": compile_s,
        "compile eager (a) img/s": eager["train img/s"],
        "compile compiled (a) img/s": compiled["train img/s"],
        "compile speedup": ratio(step_eager, step_compiled),
    }
    for name, epochs in (
        ("mean trial", asha_epochs(plan) / plan.num_samples),
        (f"{plan.max_epochs}-epoch trial", plan.max_epochs),
    ):
        on, why = decide_compile(
            step_eager, step_compiled, compile_s, round(epochs * steps_per_epoch)
        )
        print(f"compile for a googlenet_ferg {name}: {why}", flush=True)
        out[f"compile pays, {name}"] = "yes" if on else "no"
    return out
