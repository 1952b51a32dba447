"""How fast EfficientNet-Lite trains and validates on CPU, per image size: what efficientnet_manga's
defaults are sized from.

    python benchmarks/lite_cpu_speed.py      # Lite0, Lite2, MobileNet x0.25 at 128/160/224 px
    python benchmarks/lite_cpu_speed.py --models efficientnet_lite1 --sizes 160 --images 32

Each (model, size) builds the model as a trial does (`setup_trial`: ImageNet weights, the
optimiser, the input pipeline with augmentation), trains one untimed warm-up epoch, then times
`--repeats` training epochs and validation passes over `--images` random images (all layers
trained, batch 32, `--threads` torch threads: one by default, as a study runs its trials on 2
cores) and keeps the fastest of each: other processes on a shared machine only ever slow a repeat
down. It prints images per wall second and per CPU second (CPU seconds count every thread; with
one thread they are what an idle core would take), and what one manga epoch (257 train + 54 val
images) costs at those rates. Random pixels cost what real ones do. `--channels-last` keeps
weights and inputs channels-last (the trial config's `channels_last`; "auto": on CUDA only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import load_line, table  # noqa: E402 - run as a script from any directory

MANGA_TRAIN, MANGA_VAL = 257, 54  # manga's split (benchmarks/results/README.md)


def measure(
    model: str, size: int, images: int, threads: int, repeats: int = 2, channels_last: bool = False
) -> dict[str, Any]:
    """One row: train and validation rates of `model` at `size` px on `images` random images."""
    import numpy as np
    import torch

    from study.data import SplitArrays
    from study.training.config import TrainConfig
    from study.training.steps import TrialData
    from study.training.trial import setup_trial

    rng = np.random.default_rng(0)
    split = SplitArrays(
        rng.integers(0, 256, (images, 3, size, size), dtype=np.uint8),
        np.arange(images) % 7,
        [f"{i}.png" for i in range(images)],
    )
    data = TrialData(split, split, [str(c) for c in range(7)])
    options = {"pretrained": True, "head_dense": [], "dropout": 0.2}
    cfg = TrainConfig.from_config(
        {"model": model, **options, "image_size": size, "batch_size": 32, "lr": 1e-3}
        | {"num_threads": threads, "aug_strength": 0.5, "seed": 0, "max_epochs": 1 + repeats}
        | {"channels_last": channels_last}
    )
    t = setup_trial(cfg, data, torch.device("cpu"))
    t.train(t.data, 0)  # warm-up: first-call allocations and kernel choices

    def timed(step) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        return time.perf_counter() - w0, time.process_time() - c0

    train_wall, train_cpu = min(
        timed(lambda e=e: t.train(t.data, e)) for e in range(1, 1 + repeats)
    )
    val_wall, val_cpu = min(timed(lambda: t.validate(t.data)) for _ in range(repeats))
    return {
        "model": model,
        "px": size,
        "channels_last": channels_last,
        "train img/s": images / train_wall,
        "train img/CPU-s": images / train_cpu,
        "val img/s": images / val_wall,
        "manga epoch s": MANGA_TRAIN * train_wall / images + MANGA_VAL * val_wall / images,
        "manga epoch CPU-s": MANGA_TRAIN * train_cpu / images + MANGA_VAL * val_cpu / images,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        nargs="+",
        default=["efficientnet_lite0", "efficientnet_lite2", "mobilenet_v1_025"],
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 224])
    p.add_argument("--images", type=int, default=32, help="images per timed epoch (default 32)")
    # 1: how a study runs trials on 2 cores (--cpus-per-trial 1, two trials at once); with more
    # threads than free cores, OpenMP's spin-waiting makes a shared machine's timings erratic
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeats", type=int, default=2, help="timed epochs, the fastest kept")
    p.add_argument("--channels-last", action="store_true", help="channels-last weights and inputs")
    a = p.parse_args(argv)
    print(f"start: {load_line()}", flush=True)
    rows = []
    for model in a.models:
        for size in a.sizes:
            rows.append(measure(model, size, a.images, a.threads, a.repeats, a.channels_last))
            r = rows[-1]
            print(f"  {model} {size} px: {r['train img/s']:.1f} train img/s", flush=True)
    title = f"training and validation on CPU, {a.threads} threads, batch 32, best of {a.repeats}"
    print(table(rows, title, 1))
    print(f"end: {load_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
