"""Everything GPU-specific of issue 8 in one run, ending in SUMMARY lines (run by gpu_check.sh).

    bash benchmarks/gpu_check.sh          # one H100/H200: about 5-7 minutes
    bash benchmarks/gpu_check.sh --cpu    # the same code paths at tiny sizes on CPU (CI)

Phases, each through the real trainable (`train_trial` with the stand-in `ray.tune` of
benchmarks/pipeline.py; the GPU machine has no Ray) on synthetic uint8 data in memory:
  googlenet224  seed GoogLeNet at 224 px, bf16 autocast + channels_last: (a) trainable and (b)
                in-memory training img/s, (a)/(b)   (goal: (a) >= 4,000 img/s on an H100)
  ferg_epoch    one full FERG-sized epoch, 55,000 images of 224 px    (goal: <= 10 s)
  packing       4 trials sharing the GPU (what --gpus-per-trial 0.25 does: 4 processes on one
                CUDA device) vs 1 trial, aggregate img/s                (goal: >= 2.5x)
  batch_fit     a batch that does not fit: GoogLeNet-224 at batch 1024 under a 4 GiB memory cap
                (real CUDA OOMs) must halve its micro-batch and train; --cpu injects the OOMs
  pipeline      (a)/(b) for the vanilla CNN and smaller GoogLeNets
  compile       (b) with torch.compile (the space option `compile`), and its compile time
GPU utilisation is sampled by nvidia-smi in the background and averaged per phase.
Needs torch, torchvision, timm, numpy, pandas, pyarrow, pillow; never Ray, Optuna or Plotly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import (  # noqa: E402 - run as a script from any directory
    cuda_peak_mb,
    peak_rss_mb,
    ratio,
    reset_cuda_peak,
    reset_peak_rss,
    table,
)
from benchmarks.pipeline import (  # noqa: E402
    NUM_CLASSES,
    StopTrial,
    epoch_rates,
    inline_tune,
    measure_in_memory,
    measure_trainable,
    synthetic_split,
    trial_config,
)
from study import trainable  # noqa: E402
from study.trainable import TrialData, train_trial  # noqa: E402

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
    aug: float = 0.5


# 96 batches per timed epoch: a checkpoint + report per epoch (~0.2 s) is part of (a), and real
# epochs (FERG: 215 batches) amortise it; 24 batches would charge it 4x more than any real study
GPU = Sizes("googlenet", 224, 256, 96, (("vanilla_cnn", 64), ("vanilla_cnn", 112),
                                         ("vanilla_cnn", 224), ("googlenet", 64),
                                         ("googlenet", 112)),
            "googlenet", 55_000, 224,
            # the demo space's GoogLeNet x0.25 at 64 px, batch 32: a trial too small for a card
            {"model": "googlenet", "width_mult": 0.25, "image_size": 64, "batch_size": 32},
            4, 8192, 25.0, threads=4, compile=True, fit_batch=1024, fit_cap_gib=4.0)
CPU = Sizes("googlenet", 64, 8, 2, (("vanilla_cnn", 32),), "vanilla_cnn", 256, 32,
            {"model": "vanilla_cnn", "width": 8, "image_size": 32, "batch_size": 8},
            2, 64, 1.0, threads=1, compile=False, fit_batch=16, fit_cap_gib=0.0)
GOALS = {"googlenet224 (a) img/s": (">=", 4000.0), "ferg epoch s": ("<=", 10.0),
         "packing 4 vs 1": (">=", 2.5), "googlenet224 (a)/(b)": (">=", 0.9)}


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
        self.cmd = [exe, f"--id={gpu_index}", "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits"]
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
        return {"util_mean": float(np.mean(util)), "util_max": max(util),
                "util_samples": len(util), "smi_mem_max": max(mem)}

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


def synthetic(n: int, size: int, seed: int = 0) -> TrialData:
    """n training and min(n, 1024) validation images; tiled from 1,024 random ones when large,
    because generating 8 GB of random bytes would take longer than the epoch itself."""
    if n <= 1024:
        train = synthetic_split(n, size, seed)
    else:
        base = synthetic_split(1024, size, seed)
        train = type(base)(np.resize(base.images, (n, 3, size, size)),
                           np.arange(n, dtype=np.int64) % NUM_CLASSES, [""] * n)
    return TrialData(train, synthetic_split(min(n, 1024), size, seed + 1), CLASSES)


# ------------------------------------------------------------------------------------- phases
def phase_big(s: Sizes, device: torch.device) -> dict[str, Any]:
    cfg = trial_config(s.big_model, s.big_size, s.batch, s.threads, s.aug)
    data = synthetic(s.batch * s.batches, s.big_size)
    a = measure_trainable(cfg, data, device)
    b = measure_in_memory(cfg, data, s.batches, device)
    k = f"{s.big_model}{s.big_size}"  # "googlenet224" on a GPU, smaller with --cpu
    return {f"{k} (a) img/s": a["img_s"], f"{k} (b) img/s": b["img_s"],
            f"{k} (a)/(b)": ratio(a["img_s"], b["img_s"]),
            f"{k} train-only (a) img/s": a["train_img_s"],
            f"{k} train-only (a)/(b)": ratio(a["train_img_s"], b["img_s"]),
            f"{k} report s/epoch": a["report_s"],
            f"{k} RSS MiB": a["rss_mb"], f"{k} CUDA MiB": a["cuda_mb"]}


def phase_syncs(s: Sizes, device: torch.device) -> dict[str, Any]:
    """Host-device synchronisations in the training loop of the trainable, counted by torch's
    sync debug mode (each one stops the CPU from queueing work ahead of the GPU). Only
    train_epoch is watched: validation and the checkpoint (copies to the host) sync by nature,
    once per epoch."""
    if device.type != "cuda":
        return {"syncs": "not counted on CPU"}
    steps = 32
    cfg = trial_config(s.big_model, 112, s.batch, s.threads, s.aug, epochs=1)
    data = synthetic(s.batch * steps, 112)
    watched = trainable.train_epoch

    def train_epoch_watched(*args: Any, **kwargs: Any) -> Any:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            return watched(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainable.train_epoch = train_epoch_watched
        try:
            with tempfile.TemporaryDirectory() as d, inline_tune(Path(d)):
                train_trial(cfg, data)
        finally:
            trainable.train_epoch = watched
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    print(f"syncs: {len(syncs)} in one training epoch of {steps} steps", flush=True)
    return {f"syncs in train_epoch ({steps} steps)": len(syncs)}


def phase_ferg(s: Sizes, device: torch.device) -> dict[str, Any]:
    cfg = trial_config(s.ferg_model, s.ferg_size, s.batch, s.threads, s.aug)
    t0 = time.perf_counter()
    data = synthetic(s.ferg_images, s.ferg_size)
    made = time.perf_counter() - t0
    a = measure_trainable(cfg, data, device)
    first, second = a["reports"][0], a["reports"][1]
    train_s = s.ferg_images / second["images_per_s"]
    return {"ferg epoch s": train_s, "ferg epoch incl val s": second["epoch_s"],
            "ferg first epoch s": s.ferg_images / first["images_per_s"],
            "ferg img/s": second["images_per_s"], "ferg data gen s": made,
            "ferg RSS MiB": a["rss_mb"], "ferg CUDA MiB": a["cuda_mb"]}


def phase_pipeline(s: Sizes, device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = []
    for model, px in s.cells:
        cfg = trial_config(model, px, s.batch, s.threads, s.aug)
        data = synthetic(s.batch * s.batches, px)
        a = measure_trainable(cfg, data, device)
        b = measure_in_memory(cfg, data, s.batches, device)
        rows.append({"model": model, "px": px, "(a) img/s": a["img_s"], "(b) img/s": b["img_s"],
                     "(a)/(b)": ratio(a["img_s"], b["img_s"]),
                     "train-only (a)/(b)": ratio(a["train_img_s"], b["img_s"]),
                     "report s/epoch": a["report_s"], "RSS MiB": a["rss_mb"],
                     "CUDA MiB": a["cuda_mb"]})
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
        with tempfile.TemporaryDirectory() as d, inline_tune(Path(d)) as reports:
            train_trial(cfg, data)
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
    return {"batch_fit batch": s.fit_batch, "batch_fit memory cap GiB": s.fit_cap_gib or None,
            "batch_fit micro-batch": last["micro_batch"], "batch_fit (a) img/s": rate["img_s"],
            "batch_fit CUDA MiB": cuda_peak_mb(device)}


def phase_compile(s: Sizes, device: torch.device) -> dict[str, Any]:
    cfg = trial_config(s.big_model, s.big_size, s.batch, s.threads, s.aug, compile=True)
    b = measure_in_memory(cfg, synthetic(s.batch * s.batches, s.big_size), s.batches, device)
    return {"compiled (b) img/s": b["img_s"], "compile + first step s": b["warmup_s"]}


def phase_packing(s: Sizes, device: torch.device) -> dict[str, Any]:
    """n trials at once vs one; on CPU (--cpu) 2 share the 2 cores of CI instead of 4."""
    n = s.pack_n
    if device.type == "cuda":  # hand this process's cached blocks back for the trial processes
        torch.cuda.empty_cache()
    one, many = run_pack(1, s, device), run_pack(n, s, device)
    agg1, agg = sum(r["img_s"] for r in one), sum(r["img_s"] for r in many)
    starts, ends = [r["t_first"] for r in many], [r["t_last"] for r in many]
    window = float(np.mean([e - b for b, e in zip(starts, ends, strict=True)]))
    # share of the mean steady window during which all n trained at once (1.0 = perfect)
    overlap = (min(ends) - max(starts)) / window if window > 0 else float("nan")
    return {"packing 1 trial img/s": agg1, f"packing {n} trials img/s": agg,
            f"packing {n} vs 1": ratio(agg, agg1), "packing overlap": overlap,
            "packing per-trial RSS MiB": max(r["rss_mb"] for r in many),
            "packing per-trial CUDA MiB": max((r["cuda_mb"] or 0) for r in many) or None}


def run_pack(n: int, s: Sizes, device: torch.device) -> list[dict[str, Any]]:
    """n trial processes on the one device; all start training together (stdin 'go')."""
    spec = {"config": s.pack_config, "images": s.pack_images, "seconds": s.pack_seconds,
            "threads": s.threads, "aug": s.aug, "device": device.type}
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    try:
        for p in procs:  # each prints READY once its model is built
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"packing worker did not start (said {line!r})")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=s.pack_seconds * 4 + 120)
            if p.returncode != 0:
                raise RuntimeError(f"packing worker exited with {p.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def worker(spec: dict[str, Any]) -> int:
    """One packing trial: train_trial until `seconds` after 'go'; prints its steady rate."""
    device = torch.device(spec["device"])
    torch.set_num_threads(spec["threads"])
    c = spec["config"]
    cfg = trial_config(c["model"], c["image_size"], c["batch_size"], spec["threads"], spec["aug"],
                       epochs=10_000, **{k: v for k, v in c.items()
                                         if k not in ("model", "image_size", "batch_size")})
    n = spec["images"]
    data = TrialData(synthetic_split(n, c["image_size"]),
                     synthetic_split(max(2, n // 16), c["image_size"], 1), CLASSES)
    go: dict[str, float] = {}

    def on_start() -> None:
        print("READY", flush=True)
        sys.stdin.readline()
        go["t"] = time.perf_counter()

    def stop(reports: list[dict]) -> bool:
        return time.perf_counter() - go["t"] > spec["seconds"] and len(reports) >= 4

    reset_peak_rss()
    reset_cuda_peak(device)
    with tempfile.TemporaryDirectory() as d, inline_tune(Path(d), on_start, stop) as reports:
        try:
            train_trial(cfg, data)
        except StopTrial:
            pass
    ep = [r for r in reports if "epoch" in r]  # ep[0] (cuDNN search, warm-up) is left out
    secs = ep[-1]["_time"] - ep[0]["_time"]
    offset = time.time() - time.perf_counter()  # perf_counter is per process: compare wall times
    print(json.dumps({"img_s": n * (len(ep) - 1) / secs, "epochs": len(ep),
                      "t_first": ep[0]["_time"] + offset, "t_last": ep[-1]["_time"] + offset,
                      "rss_mb": peak_rss_mb(), "cuda_mb": cuda_peak_mb(device)}), flush=True)
    return 0


# --------------------------------------------------------------------------------------- main
def describe(device: torch.device) -> str:
    parts = [f"torch {torch.__version__}", f"device {device}"]
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        parts += [p.name, f"{p.total_memory / 2**30:.0f} GiB", f"sm {p.major}.{p.minor}",
                  f"bf16 {torch.cuda.is_bf16_supported()}",
                  f"cudnn {torch.backends.cudnn.version()}"]
    return ", ".join(parts) + f"; {os.cpu_count()} CPUs"


def verdict(name: str, value: Any, cpu: bool) -> str:
    if cpu or name not in GOALS or not isinstance(value, int | float) or value != value:
        return ""
    op, goal = GOALS[name]
    ok = value >= goal if op == ">=" else value <= goal
    return f"   (goal {op} {goal:g}: {'met' if ok else 'MISSED'})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="tiny sizes on CPU (CI)")
    p.add_argument("--phases", nargs="+", default=None,
                   help="subset of: googlenet224 syncs ferg_epoch packing batch_fit pipeline "
                   "compile")
    p.add_argument("--budget-s", type=float, default=480,
                   help="phases not started within this many seconds are skipped")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.cpu:  # before CUDA initialises: the trainable picks a GPU whenever it sees one
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if a.worker:
        return worker(json.loads(a.worker))
    if not a.cpu and not torch.cuda.is_available():
        print("error: no CUDA device visible; use --cpu for the reduced CPU run", file=sys.stderr)
        return 2
    device = torch.device("cpu" if a.cpu else "cuda")
    s = CPU if a.cpu else GPU
    phases = {"googlenet224": phase_big, "syncs": phase_syncs, "ferg_epoch": phase_ferg,
              "packing": phase_packing, "batch_fit": phase_batch_fit, "pipeline": phase_pipeline,
              "compile": phase_compile}
    wanted = a.phases or list(phases)
    unknown = set(wanted) - set(phases)
    if unknown:
        p.error(f"--phases {sorted(unknown)}: expected some of {', '.join(phases)}")
    print(describe(device), flush=True)
    smi = SmiSampler(gpu_index()) if device.type == "cuda" else None
    start = time.perf_counter()
    results: dict[str, Any] = {}
    status: dict[str, str] = {}
    try:
        for name in wanted:
            if name == "compile" and not s.compile:
                status[name] = "skipped (--cpu: compiling takes minutes on CPU)"
                continue
            if time.perf_counter() - start > a.budget_s:
                status[name] = f"skipped (past --budget-s {a.budget_s:g})"
                continue
            t0 = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                results |= phases[name](s, device)
                status[name] = f"ok in {time.perf_counter() - t0:.1f} s"
            except Exception as e:  # one failed phase must not hide the others
                status[name] = f"FAILED: {type(e).__name__}: {e}"
                print(status[name], flush=True)
            if smi is not None:
                for k, v in smi.window(t0, time.perf_counter()).items():
                    results[f"{name} gpu {k}"] = v
    except KeyboardInterrupt:  # gpu_check.sh's time limit: still print what was measured
        status["interrupted"] = "FAILED: time limit reached"
    finally:
        if smi is not None:
            smi.close()
    print("\n" + "=" * 30 + " gpu_check summary " + "=" * 30)
    print(f"SUMMARY device: {describe(device)}")
    if smi is not None and smi.error:
        print(f"SUMMARY gpu utilisation: {smi.error}")
    elif smi is None:
        print("SUMMARY gpu utilisation: not sampled on CPU")
    for name, st in status.items():
        print(f"SUMMARY phase {name}: {st}")
    for k, v in results.items():
        shown = f"{v:,.2f}" if isinstance(v, float) else "-" if v is None else str(v)
        print(f"SUMMARY {k}: {shown}{verdict(k, v, a.cpu)}")
    print(f"SUMMARY total s: {time.perf_counter() - start:.1f}")
    return 1 if any(st.startswith("FAILED") for st in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
