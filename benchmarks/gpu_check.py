"""Everything GPU-specific of issue 8 in one run, ending in SUMMARY lines (run by gpu_check.sh).

    bash benchmarks/gpu_check.sh          # one H100/H200: about 5-7 minutes
    bash benchmarks/gpu_check.sh --cpu    # the same code paths at tiny sizes on CPU (CI)

Phases (in benchmarks/gpu_phases.py, packing here), each through the real trial
(`study.training.trial.run_trial`, run without Ray by the inline_trial of benchmarks/harness.py; the
GPU machine has no Ray) on synthetic uint8 data in memory:
  googlenet224  seed GoogLeNet at 224 px, bf16 autocast + channels_last: (a) trainable and (b)
                in-memory training img/s, (a)/(b)   (goals: (a) >= 4,000 img/s, (a)/(b) >= 0.95)
  syncs         host-device synchronisations in one training epoch (--cpu: host reads of
                tensor values by study code per training step, the CPU stand-in)
  ferg_epoch    one full FERG-sized epoch, 55,000 images of 224 px    (goal: <= 10 s), and the
                first epoch split into data waits, steps with a new batch shape (cuDNN's
                algorithm search, lazy set-up) and the other steps (goal: first <= 1.5x steady)
  ferg_study    a googlenet_ferg trial's epoch (112 px, each batch size of the space) scaled to
                FERG's split, and the GPU-hours of a 64-trial ASHA study (benchmarks/study_cost.py)
  packing       4 trials sharing the GPU (what --gpus-per-trial 0.25 does: 4 processes on one
                CUDA device) vs 1 trial, aggregate img/s                (goal: >= 2.5x)
  batch_fit     a batch that does not fit: GoogLeNet-224 at batch 1024 under a 4 GiB memory cap
                (real CUDA OOMs) must halve its micro-batch and train; --cpu injects the OOMs
  pipeline      (a)/(b) for the vanilla CNN and smaller GoogLeNets          (goal: >= 0.95)
  compile       the trainable eager vs compile=True at a googlenet_ferg trial's size: compile
                time, speedup, and whether compile "auto" pays for a trial of that study
Ends with one summary table of the headline figures and their goals.
GPU utilisation is sampled by nvidia-smi in the background and averaged per phase.
Needs torch, torchvision, timm, numpy, pandas, pyarrow, pillow; never Ray, Optuna or Plotly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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
)
from benchmarks.gpu_instruments import (  # noqa: E402
    SmiSampler,
    gpu_index,
    parse_smi_line,  # noqa: F401 - tests read it from here
    shown,
    summary_table,
    verdict,
)
from benchmarks.gpu_phases import (  # noqa: E402
    CLASSES,
    Sizes,
    describe,
    phase_batch_fit,
    phase_big,
    phase_compile,
    phase_ferg,
    phase_ferg_study,
    phase_pipeline,
    phase_syncs,
)
from benchmarks.harness import (  # noqa: E402
    inline_trial,
    synthetic_split,
    trial_config,
)
from benchmarks.study_cost import (  # noqa: E402
    GOOGLENET_FERG,
)
from study.training.steps import TrialData

GPU = Sizes(
    "googlenet",
    224,
    256,
    96,
    (
        ("vanilla_cnn", 64),
        ("vanilla_cnn", 112),
        ("vanilla_cnn", 224),
        ("googlenet", 64),
        ("googlenet", 112),
    ),
    "googlenet",
    55_000,
    224,
    # a small trial (GoogLeNet x0.25 at 64 px, batch 32; the demo space's model when the packing
    # figures were measured): too small to fill a card on its own
    {"model": "googlenet", "width_mult": 0.25, "image_size": 64, "batch_size": 32},
    4,
    8192,
    25.0,
    threads=4,
    compile=True,
    fit_batch=1024,
    fit_cap_gib=4.0,
    study_model="googlenet",
    study_size=GOOGLENET_FERG.image_size,
    study_batches=GOOGLENET_FERG.batch_sizes,
    study_steps=256,
)
CPU = Sizes(
    "googlenet",
    64,
    8,
    2,
    (("vanilla_cnn", 32),),
    "vanilla_cnn",
    256,
    32,
    {"model": "vanilla_cnn", "width": 8, "image_size": 32, "batch_size": 8},
    2,
    64,
    1.0,
    threads=1,
    compile=False,
    fit_batch=16,
    fit_cap_gib=0.0,
    study_model="vanilla_cnn",
    study_size=32,
    study_batches=(4, 8),
    study_steps=3,
)


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
    return {
        "packing 1 trial img/s": agg1,
        f"packing {n} trials img/s": agg,
        f"packing {n} vs 1": ratio(agg, agg1),
        "packing overlap": overlap,
        "packing per-trial RSS MiB": max(r["rss_mb"] for r in many),
        "packing per-trial CUDA MiB": max((r["cuda_mb"] or 0) for r in many) or None,
    }


def run_pack(n: int, s: Sizes, device: torch.device) -> list[dict[str, Any]]:
    """n trial processes on the one device; all start training together (stdin 'go')."""
    spec = {
        "config": s.pack_config,
        "images": s.pack_images,
        "seconds": s.pack_seconds,
        "threads": s.threads,
        "aug": s.aug,
        "device": device.type,
    }
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
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
    """One packing trial: trains until `seconds` after 'go'; prints its steady rate."""
    device = torch.device(spec["device"])
    torch.set_num_threads(spec["threads"])
    c = spec["config"]
    cfg = trial_config(
        c["model"],
        c["image_size"],
        c["batch_size"],
        spec["threads"],
        spec["aug"],
        epochs=10_000,
        **{k: v for k, v in c.items() if k not in ("model", "image_size", "batch_size")},
    )
    n = spec["images"]
    data = TrialData(
        synthetic_split(n, c["image_size"]),
        synthetic_split(max(2, n // 16), c["image_size"], 1),
        CLASSES,
    )
    go: dict[str, float] = {}

    def on_start() -> None:
        print("READY", flush=True)
        sys.stdin.readline()
        go["t"] = time.perf_counter()

    def stop(reports: list[dict]) -> bool:
        return time.perf_counter() - go["t"] > spec["seconds"] and len(reports) >= 4

    reset_peak_rss()
    reset_cuda_peak(device)
    with tempfile.TemporaryDirectory() as d:
        reports = inline_trial(cfg, data, Path(d), on_start, stop)
    ep = [r for r in reports if "epoch" in r]  # ep[0] (cuDNN search, warm-up) is left out
    secs = ep[-1]["_time"] - ep[0]["_time"]
    offset = time.time() - time.perf_counter()  # perf_counter is per process: compare wall times
    print(
        json.dumps(
            {
                "img_s": n * (len(ep) - 1) / secs,
                "epochs": len(ep),
                "t_first": ep[0]["_time"] + offset,
                "t_last": ep[-1]["_time"] + offset,
                "rss_mb": peak_rss_mb(),
                "cuda_mb": cuda_peak_mb(device),
            }
        ),
        flush=True,
    )
    return 0


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="tiny sizes on CPU (CI)")
    p.add_argument(
        "--phases",
        nargs="+",
        default=None,
        help="subset of: googlenet224 syncs ferg_epoch ferg_study packing batch_fit "
        "pipeline compile",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=480,
        help="phases not started within this many seconds are skipped",
    )
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
    phases = {
        "googlenet224": phase_big,
        "syncs": phase_syncs,
        "ferg_epoch": phase_ferg,
        "ferg_study": phase_ferg_study,
        "packing": phase_packing,
        "batch_fit": phase_batch_fit,
        "pipeline": phase_pipeline,
        "compile": phase_compile,
    }
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
        print(f"SUMMARY {k}: {shown(v)}{verdict(k, v, a.cpu)}")
    print(f"SUMMARY total s: {time.perf_counter() - start:.1f}")
    if results:
        print(summary_table(results, a.cpu))
    return 1 if any(st.startswith("FAILED") for st in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
