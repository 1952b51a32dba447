"""Does a toon model help on manga? Warm start (init_from) against training from scratch.

    python benchmarks/transfer_toon_manga.py --data-dir DATA [--epochs 30] [--seeds 3]

DATA holds the prepared `toon` (source) and `manga` (target) data sets. A plain BN CNN (the
demo's vanilla_cnn, width 32, depth 4, linear head) is trained on toon's train split and written
as a study's final model (`final_model/`, what `--refit` writes), then fine-tuned on manga through
the real `init_from STUDY:final` path. Every arm trains the same network with the same config,
epochs and seeds on manga's train split and is scored after its last epoch (no selection on
validation), on validation and on test:
  scratch           random initialisation
  toon, fine-tune   init_from, everything trained
  toon, lr x0.1     init_from, backbone at a tenth of the learning rate
  toon, frozen      init_from, only the new 7-class head trained (freeze=backbone)
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from study.data import load_split, open_dataset
from study.evaluation.inference import probabilities
from study.results.confirmed import mean_sd
from study.training.fit import fit
from study.training.transfer import write_final_model

NET = {
    "model": "vanilla_cnn",
    "width": 32,
    "depth": 4,
    "batch_norm": True,
    "head_dense": [],
    "dropout": 0.2,
}
TRAIN = {
    "optimizer": "adam",
    "lr": 2e-3,
    "batch_size": 32,
    "aug_strength": 0.3,
    "class_weights": True,
    "num_threads": 2,
}
ARMS = {
    "scratch": {},
    "toon, fine-tune": {"init_from": True},
    "toon, lr x0.1": {"init_from": True, "backbone_lr_mult": 0.1},
    "toon, frozen": {"init_from": True, "freeze": "backbone"},
}


def accuracy(model, arr) -> float:
    probs = probabilities(model, arr, torch.device("cpu"))
    return float((probs.argmax(1) == arr.labels).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--source-epochs", type=int, default=15)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, default=3)
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    size = a.image_size
    toon, manga = open_dataset(a.data_dir, "toon"), open_dataset(a.data_dir, "manga")
    t0 = time.perf_counter()
    src_cfg = {**NET, **TRAIN, "image_size": size, "max_epochs": a.source_epochs, "seed": 0}
    source = fit(src_cfg, load_split(toon, "train", size), toon.classes, a.source_epochs)
    src_val = accuracy(source.model, load_split(toon, "val", size))
    print(
        f"source: toon train ({len(load_split(toon, 'train', size).labels)} images), "
        f"{a.source_epochs} epochs, toon val acc {src_val:.3f} (chance {1 / 7:.3f}), "
        f"{time.perf_counter() - t0:.0f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        sd = Path(tmp) / "toon-source"
        sd.mkdir()
        (sd / "study.json").write_text(pd.Series({"dataset": {"classes": toon.classes}}).to_json())
        buf = io.BytesIO()
        torch.save(source.model.state_dict(), buf)
        write_final_model(str(sd), buf.getvalue(), {"config": src_cfg, "classes": toon.classes})
        train, val, test = (load_split(manga, s, size) for s in ("train", "val", "test"))
        rows = []
        for arm, extra in ARMS.items():
            for seed in range(a.seeds):
                cfg = {**NET, **TRAIN, "image_size": size, "max_epochs": a.epochs, "seed": seed}
                cfg |= {k: v for k, v in extra.items() if k != "init_from"}
                if extra.get("init_from"):
                    cfg["init_from"] = f"{sd}:final"
                t1 = time.perf_counter()
                fitted = fit(cfg, train, manga.classes, a.epochs)
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "val_acc": accuracy(fitted.model, val),
                        "test_acc": accuracy(fitted.model, test),
                        "wall_s": time.perf_counter() - t1,
                    }
                )
                print(
                    f"  {arm:16s} seed {seed}: val {rows[-1]['val_acc']:.3f} "
                    f"test {rows[-1]['test_acc']:.3f} ({rows[-1]['wall_s']:.0f} s)",
                    flush=True,
                )
    df = pd.DataFrame(rows)
    counts = np.bincount(train.labels, minlength=len(manga.classes))
    table = df.groupby("arm", sort=False).agg(
        val=("val_acc", lambda v: mean_sd(v.mean(), v.std(ddof=1))),
        test=("test_acc", lambda v: mean_sd(v.mean(), v.std(ddof=1))),
        s_per_run=("wall_s", "mean"),
    )
    print(
        f"\nmanga: train {len(train.labels)}, val {len(val.labels)}, test {len(test.labels)} "
        f"images at {size} px; {a.epochs} epochs, {a.seeds} seeds per arm; majority class of "
        f"train: {manga.classes[int(counts.argmax())]}; test majority baseline "
        f"{np.bincount(test.labels).max() / len(test.labels):.3f}"
    )
    print(table.to_string(float_format=lambda v: f"{v:.0f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
