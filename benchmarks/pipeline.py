"""Is a trial compute-bound? Training-step rate of the real trainable vs the model alone vs a naive
PNG-decoding DataLoader, per model and image size, in one table.

    python benchmarks/pipeline.py [--quick] [--models googlenet vanilla_cnn] [--sizes 64 112 224]
        [--batch-size 32] [--batches 3] [--threads 2] [--runner inline|ray] [--device cpu|cuda]

(a) trainable: the trial itself (`study.training.trial.run_trial`), for 1 warm-up epoch + 1 timed
epoch of
    `batches` batches: data view (memmap rows), augmentation, model, optimiser, and reporting
    (the best-weights copy, both checkpoint files and the copy of the checkpoint into storage).
    img/s = images / (train time + reporting time) of the timed epoch; validation (a 32-image
    split here) is left out, it is not a training step. The trainable's own `images_per_s`
    (train_epoch only) is shown too.
    --runner inline (default) calls it in this process, without Ray, with a report that copies
    the checkpoint as Ray's local storage does: same process, threads and allocator as (b), so
    the ratio is not moved by which process got the busier core, and the trial's peak RSS is this
    process's. --runner ray runs `study.tuning.trainable.train_trial` as a real single-trial Ray
    Tune run and reads what it reported (its time_this_iter_s gives the reporting time), to confirm
    it.
(b) in memory: the same model, optimiser and loss on normalised tensors already on the device.
(c) naive: torchvision ImageFolder + DataLoader decoding PNG files (256 px, as FERG's) with PIL
    every epoch (persistent workers, 1 warm-up epoch, 1 timed epoch).
"""

from __future__ import annotations

import argparse
import json
import os
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
    load_line,
    peak_rss_mb,
    ratio,
    reset_cuda_peak,
    reset_peak_rss,
    table,
)
from benchmarks.harness import (  # noqa: E402
    NUM_CLASSES,
    epoch_rates,
    measure_in_memory,
    measure_trainable,
    sync,
    synthetic_split,
    trial_config,
)
from study.data import SplitArrays  # noqa: E402
from study.training.config import TrainConfig
from study.training.steps import TrialData, autocast, build_model, loss_fn, make_optimizer

DEFAULT_DATA = Path(tempfile.gettempdir()) / "study-bench-data"


def measure_trainable_ray(config: dict, data: TrialData, storage: Path) -> dict[str, Any]:
    """A real single-trial Ray Tune run of train_trial (CPU only: it asks for no GPU)."""
    import ray
    from ray import tune

    from benchmarks._util import ProcPeakSampler
    from study.tuning.trainable import train_trial

    ray.init(
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=data), {"cpu": config["num_threads"]}
    )
    tuner = tune.Tuner(
        trainable,
        param_space=config,
        run_config=tune.RunConfig(storage_path=str(storage), verbose=0),
    )
    with ProcPeakSampler(os.getpid(), "ray::ImplicitFunc") as sampler:
        result = tuner.fit()[0]
    if result.error:
        raise RuntimeError(f"the Ray trial failed: {result.error}")
    df = result.metrics_dataframe
    reports = df.assign(_time=np.nan).to_dict("records")
    return epoch_rates(reports, len(data.train.labels)) | {
        "rss_mb": sampler.peak("ray::ImplicitFunc"),
        "cuda_mb": None,
    }


def write_pngs(ds: Any, n: int, png_size: int, out: Path) -> Path:
    """The first n train images of a prepared set as PNG files in class folders (ImageFolder)."""
    import pyarrow.parquet as pq
    from PIL import Image

    from study.data.decode import decode_rgb
    from study.data.prepare import IMAGES_FILE

    t = pq.read_table(
        ds.root / IMAGES_FILE, columns=["image", "label"], filters=[("split", "=", "train")]
    )
    blobs, labels = t.column("image").to_pylist(), t.column("label").to_pylist()
    for i in range(n):
        j = i % len(blobs)
        (out / labels[j]).mkdir(parents=True, exist_ok=True)
        decode_rgb(blobs[j]).resize((png_size, png_size), Image.BICUBIC).save(
            out / labels[j] / f"{i:06d}.png"
        )
    return out


def measure_naive(config: dict, png_dir: Path, workers: int, device: torch.device) -> dict:
    """(c): ImageFolder + DataLoader, PIL decode + resize every epoch; epoch 2 is timed."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    cfg = TrainConfig.from_config(config)
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    tf = transforms.Compose(
        [
            transforms.Resize((cfg.image_size, cfg.image_size)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    folder = datasets.ImageFolder(str(png_dir), transform=tf)
    loader = DataLoader(
        folder,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )
    reset_peak_rss()
    reset_cuda_peak(device)
    model = build_model(cfg, max(NUM_CLASSES, len(folder.classes)), device)
    opt = make_optimizer(cfg, model)
    model.train()
    times = []
    for _ in range(2):
        sync(device)
        t0 = time.perf_counter()
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                loss = loss_fn(model, model(x), y, cfg, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {
        "img_s": len(folder) / times[-1],
        "rss_mb": peak_rss_mb(),
        "cuda_mb": cuda_peak_mb(device),
    }


def toon_data(ds: Any, size: int, n: int) -> TrialData:
    """The first n train images (repeated if the set is smaller) and 32 val images at `size`."""
    from study.data import load_split

    tr, va = load_split(ds, "train", size), load_split(ds, "val", size)
    idx = np.arange(n) % len(tr.labels)
    train = (
        tr
        if n == len(tr.labels)
        else SplitArrays(
            tr.images[:n] if n <= len(tr.labels) else tr.images[idx],
            tr.labels[idx],
            [tr.paths[i] for i in idx],
        )
    )
    val = SplitArrays(va.images[:32], va.labels[:32], va.paths[:32])
    return TrialData(train, val, ds.classes)


def run_cell(
    model: str, size: int, a: argparse.Namespace, ds: Any, device: torch.device, work: Path
) -> dict[str, Any]:
    n = a.batches * a.batch_size
    config = trial_config(model, size, a.batch_size, a.threads, a.aug_strength)
    classes = [str(i) for i in range(NUM_CLASSES)]
    data = (
        toon_data(ds, size, n)
        if ds is not None
        else TrialData(synthetic_split(n, size), synthetic_split(32, size, 1), classes)
    )
    measured: dict[str, list[dict]] = {"a": [], "b": [], "c": []}
    for _ in range(a.repeats):  # (a), (b), (c) in turn, so a change of load hits all three
        if a.runner == "ray":
            measured["a"].append(measure_trainable_ray(config, data, work / f"ray-{model}-{size}"))
        else:
            measured["a"].append(measure_trainable(config, data, device))
        measured["b"].append(measure_in_memory(config, data, a.batches, device))
        if ds is not None and a.naive:
            png = work / f"png-{n}-{a.png_size}"
            if not png.exists():
                write_pngs(ds, n, a.png_size, png)
            measured["c"].append(measure_naive(config, png, a.workers, device))
    ta, tb = median(measured["a"]), median(measured["b"])
    tc = median(measured["c"]) if measured["c"] else None
    row = {
        "model": model,
        "px": size,
        "batch": a.batch_size,
        "(a) trainable": ta["img_s"],
        "(b) in-memory": tb["img_s"],
        "(c) naive PNG": tc["img_s"] if tc else None,
        "(a)/(b)": ratio(ta["img_s"], tb["img_s"]),
        "(a)/(c)": ratio(ta["img_s"], tc["img_s"] if tc else None),
        "train_epoch img/s": ta["train_img_s"],
        "report s/epoch": ta["report_s"],
        "RSS MiB (a)": ta["rss_mb"],
        "(b)": tb["rss_mb"],
        "(c)": tc["rss_mb"] if tc else None,
    }
    if device.type == "cuda":
        row |= {
            "CUDA MiB (a)": ta["cuda_mb"],
            "CUDA (b)": tb["cuda_mb"],
            "CUDA (c)": tc["cuda_mb"] if tc else None,
        }
    return row


def median(results: list[dict]) -> dict[str, Any]:
    """Median of each rate over repeats; the largest of each peak."""
    out: dict[str, Any] = {}
    for k, v in results[0].items():
        vals = [r[k] for r in results if r[k] is not None]
        if k.endswith("_mb"):
            out[k] = max(vals) if vals else None
        elif isinstance(v, int | float):
            out[k] = float(np.median(vals))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["googlenet", "vanilla_cnn"])
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 112, 224])
    p.add_argument("--batch-size", type=int, default=32, help="the seed's")
    p.add_argument("--batches", type=int, default=3, help="batches per timed epoch")
    # 1, not 2: with 2 OpenMP threads on 2 cores, any other busy process stalls every parallel
    # region (measured here: steps 5x slower and erratic), which would swamp what we compare
    p.add_argument("--threads", type=int, default=1, help="torch threads, as a trial's num_threads")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="measure (a), (b), (c) in turn this often; medians are shown",
    )
    p.add_argument("--aug-strength", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of (c)")
    p.add_argument("--png-size", type=int, default=256, help="side of (c)'s PNG files")
    p.add_argument("--no-naive", dest="naive", action="store_false", help="skip (c)")
    p.add_argument("--runner", choices=["inline", "ray"], default="inline")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if any")
    p.add_argument(
        "--data",
        choices=["toon", "synthetic"],
        default="toon",
        help="toon: the prepared embedded set; synthetic: random uint8, no (c)",
    )
    p.add_argument("--toon-size", default="small", help="toon source: tiny|small|default|N")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--quick", action="store_true", help="2 batches of 16 per epoch, 64/112 px")
    p.add_argument("--json", type=Path, help="also write the table's rows here")
    a = p.parse_args(argv)
    if a.quick:
        a.batches, a.batch_size, a.sizes = 2, 16, [s for s in a.sizes if s <= 112] or a.sizes
    for opt in ("batch_size", "batches", "threads", "repeats"):
        if getattr(a, opt) < 1:
            p.error(f"--{opt.replace('_', '-')} {getattr(a, opt)}: expected an integer >= 1")
    if min(a.sizes) < 32:
        p.error(f"--sizes {a.sizes}: every size must be >= 32 (TrainConfig's minimum)")
    if a.batch_size < 2:
        p.error("--batch-size 1: batch norm cannot train on one image")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.device == "cpu":  # before CUDA initialises: the trainable picks a GPU whenever it sees one
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if a.runner == "ray" and device.type == "cuda":
        print(
            "--runner ray measures on CPU only here; use the inline runner on a GPU",
            file=sys.stderr,
        )
        return 2
    ds = None
    if a.data == "toon":
        from benchmarks._util import prepare_toon

        ds = prepare_toon(a.data_dir, a.toon_size)
    print(f"device {device}; torch threads {a.threads}; {load_line()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model in a.models:
            for size in a.sizes:
                rows.append(run_cell(model, size, a, ds, device, Path(work)))
                print(f"  done {model} {size}px", flush=True)
    print(
        table(
            rows,
            f"Training-step rate, img/s ({a.batches} x {a.batch_size} images per timed "
            f"epoch, runner {a.runner}, aug_strength {a.aug_strength}, {a.threads} "
            f"thread(s), median of {a.repeats}; peak RSS MiB)",
        )
    )
    print(load_line())
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
