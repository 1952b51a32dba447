"""Which training recipe lets the zoo's models leave chance on small data? Curves per recipe.

    python benchmarks/recipe.py --dataset manga --image-size 112 \\
        --cases seed_googlenet seed_googlenet_extra --recipes init=torch init=glorot --epochs 10
    python benchmarks/recipe.py --dataset toon --image-size 48 --cases demo_cnn demo_googlenet \\
        --recipes init=torch "init=glorot,warmup_epochs=1" --epochs 10

Each (case, recipe, seed) trains one model through the trainable's own pieces (model factory,
optimiser, learning-rate schedule, train_epoch with augmentation and class weights, validation),
without Ray, on the prepared data set's train split, and is validated on its val split. A case is
a named model config (the seed's presets, the demo's models); a recipe is `key=value,...` over
that config (any trial config key: init, lr, warmup_epochs, label_smoothing, class_weights,
aug_strength, dropout, batch_size, ...). The table shows train loss and val accuracy after the
--at epochs, the share of dead ReLUs in the head's hidden layer after the first two of them,
the best val accuracy, and the first epoch at which the trial beat guessing
(study.results.statistics: binomial bound on the val split); "-" = still at chance.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import load_line, table  # noqa: E402 - run as a script from any directory

# the seed's presets: googlenet_manga's two starting points with the seed's recipe (Adam 1e-3,
# batch 32, its augmentation, constant learning rate, class weights as the manga spaces use)
_SEED_RECIPE = {
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 32,
    "aug_strength": 0.5,
    "lr_schedule": "constant",
    "class_weights": True,
}
CASES: dict[str, dict[str, Any]] = {
    "seed_googlenet": {"model": "googlenet", "head_dense": [64], "dropout": 0.4, **_SEED_RECIPE},
    "seed_googlenet_extra": {
        "model": "googlenet",
        "extra_inception_3": 1,
        "extra_inception_5": 1,
        "head_dense": [64, 64],
        "dropout": 0.4,
        **_SEED_RECIPE,
    },
    "demo_googlenet": {
        "model": "googlenet",
        "width_mult": 0.25,
        "batch_norm": True,
        "head_dense": [64],
        "dropout": 0.3,
        "optimizer": "adam",
        "lr": 2e-3,
        "batch_size": 32,
        "aug_strength": 0.15,
    },
    "demo_cnn": {
        "model": "vanilla_cnn",
        "width": 32,
        "depth": 4,
        "batch_norm": True,
        "head_dense": [64],
        "dropout": 0.3,
        "optimizer": "adam",
        "lr": 2e-3,
        "batch_size": 32,
        "aug_strength": 0.15,
    },
}


def parse_recipe(text: str) -> dict[str, Any]:
    """`key=value,key=value` -> dict; values are JSON where they parse (numbers, true, [64])."""
    out: dict[str, Any] = {}
    # commas inside [...] belong to a list value (head_dense=[64,64])
    for part in filter(None, (p.strip() for p in re.split(r",(?![^\[]*\])", text))):
        key, sep, raw = part.partition("=")
        if not sep:
            raise SystemExit(f"--recipes {text!r}: expected key=value pairs, got {part!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def dead_units(model, data, aug, device) -> float:
    """Share of the head's first hidden layer's units that are zero for every val image (dead
    ReLUs: nothing flows back through them, so a head with all of them dead never learns); NaN
    for a linear head."""
    import torch

    act = getattr(model.head, "act0", None)
    if act is None:
        return float("nan")
    seen: list[torch.Tensor] = []
    hook = act.register_forward_hook(lambda _m, _i, out: seen.append(out.detach() > 0))
    try:
        from study.training.steps import predict

        predict(model, data.val, aug, device)
    finally:
        hook.remove()
    alive = torch.cat(seen).any(0)
    return 1.0 - float(alive.float().mean())


def run_one(
    config: dict[str, Any], data, epochs: int, horizon: int = 0, log: str = ""
) -> list[dict[str, float]]:
    """Train one config for `epochs` epochs of a `horizon`-epoch schedule (default: `epochs`);
    one row (train loss/acc, val loss/acc, CPU seconds, dead head units) per epoch. With `log`,
    print a line per epoch that starts with it (long runs on a busy machine show progress)."""
    import torch

    from study.training.config import TrainConfig
    from study.training.trial import setup_trial

    cfg = TrainConfig.from_config({**config, "max_epochs": max(horizon, epochs)})
    device = torch.device("cpu")
    t = setup_trial(cfg, data, device)  # model, optimiser, input pipeline as a trial's
    rows = []
    for epoch in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        loss, acc, _ = t.train(data, epoch)  # the trial's schedule and batch order
        val_loss, val_acc, _ = t.validate(data)
        rows.append(
            {
                "train_loss": loss,
                "train_acc": acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "s": time.perf_counter() - t0,
                # CPU seconds: with one thread, what the epoch costs on an idle core
                "cpu_s": time.process_time() - c0,
                "dead": dead_units(t.model, data, t.aug, device),
            }
        )
        if log:
            r = rows[-1]
            print(
                f"{log} epoch {epoch + 1}: train loss {r['train_loss']:.3f}, val acc "
                f"{r['val_acc']:.3f}, {r['cpu_s']:.1f} CPU s",
                flush=True,
            )
    return rows


def left_chance(val_accs: list[float], base) -> int | None:
    """The first epoch after which the history is no longer at chance, else None."""
    from study.results.statistics import at_chance

    return next((e for e in range(1, len(val_accs) + 1) if not at_chance(val_accs[:e], base)), None)


def load_data(dataset: str, data_dir: str | None, image_size: int, train_subset: int = 0):
    """(TrialData, Baseline) of a prepared data set's train and val splits at `image_size`;
    `train_subset` > 0 keeps that many train images (a fixed random subset)."""
    from study.data import default_data_dir, load_split, open_dataset
    from study.results.statistics import Baseline
    from study.training.steps import TrialData

    ds = open_dataset(data_dir or default_data_dir(), dataset)
    train = load_split(ds, "train", image_size)
    if train_subset:
        import numpy as np

        from study.data import SplitArrays

        # a fixed random subset: the split is stored class by class
        idx = np.sort(np.random.default_rng(0).permutation(len(train.labels))[:train_subset])
        train = SplitArrays(train.images[idx], train.labels[idx], [train.paths[i] for i in idx])
    data = TrialData(train=train, val=load_split(ds, "val", image_size), classes=ds.classes)
    return data, Baseline.from_manifest(ds.manifest)


def compare(
    cases: dict[str, dict[str, Any]],
    recipes: dict[str, dict[str, Any]],
    seeds: list[int],
    data,
    base,
    epochs: int,
    horizon: int = 0,
    at: list[int] = (1, 3, 10),  # type: ignore[assignment]
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train every (case, recipe, seed), print its val-acc curve as it ends (`progress`: every
    epoch as it ends); one table row each."""
    at = [e for e in at if e <= epochs]
    rows = []
    for case, config in cases.items():
        for name, recipe in recipes.items():
            for seed in seeds:
                t0 = time.perf_counter()
                log = f"  {case} [{name}] seed {seed}" if progress else ""
                hist = run_one({**config, **recipe, "seed": seed}, data, epochs, horizon, log)
                accs = [h["val_acc"] for h in hist]
                left = left_chance(accs, base)
                row: dict[str, Any] = {"case": case, "recipe": name, "seed": seed}
                row |= {f"loss@{e}": hist[e - 1]["train_loss"] for e in at}
                row |= {f"val@{e}": hist[e - 1]["val_acc"] for e in at}
                row |= {f"dead@{e}": hist[e - 1]["dead"] for e in at[:2]}
                row |= {
                    "best val": max(accs),
                    "left chance": left if left else "-",
                    "s/epoch": (time.perf_counter() - t0) / epochs,
                    "cpu s/epoch": sum(h["cpu_s"] for h in hist) / epochs,
                }
                rows.append(row)
                curve = " ".join(f"{v:.2f}" for v in accs)
                print(f"  {case} [{name}] seed {seed}: val acc {curve}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="toon")
    p.add_argument("--data-dir", default=None, help="default: $STUDY_DATA_DIR, else ./data")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument(
        "--cases",
        nargs="+",
        default=["demo_cnn", "demo_googlenet"],
        help=f"any of {', '.join(CASES)}",
    )
    p.add_argument("--recipes", nargs="+", default=["init=torch", "init=glorot"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument(
        "--horizon",
        type=int,
        default=0,
        help="epochs the learning-rate schedule spans (default --epochs): the first "
        "epochs of a longer trial",
    )
    p.add_argument("--at", type=int, nargs="+", default=[1, 3, 10], help="epochs to show")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--train-subset", type=int, default=0, help="train on N random train images only (0 = all)"
    )
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    unknown = [c for c in a.cases if c not in CASES]
    if unknown:
        p.error(f"--cases {' '.join(unknown)}: expected any of {', '.join(CASES)}")
    recipes = {r: parse_recipe(r) for r in a.recipes}

    import torch

    torch.set_num_threads(a.threads)
    data, base = load_data(a.dataset, a.data_dir, a.image_size, a.train_subset)
    print(
        f"{a.dataset} at {a.image_size} px: train {len(data.train.labels)}, val "
        f"{len(data.val.labels)}, {len(data.classes)} classes, guessing {base.p0:.3f}; "
        f"{load_line()}",
        flush=True,
    )
    cases = {c: CASES[c] for c in a.cases}
    rows = compare(cases, recipes, a.seeds, data, base, a.epochs, a.horizon, a.at)
    print(
        table(
            rows,
            f"recipes on {a.dataset} at {a.image_size} px, {a.epochs} epochs "
            f"(loss: train, val: validation accuracy)",
            digits=3,
        )
    )
    print(load_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
