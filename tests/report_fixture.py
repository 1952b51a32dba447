"""Generate a small synthetic study directory in the runner's schema, for the report tests.

Accuracy depends on the hyperparameters (best near lr=1e-2, low dropout) so the importance and
axis plots have something to find; one class name and one file name are HTML/JS, to check that the
report shows them as text.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from study.results.tables import epochs_frame, write_parquet
from study.results.trials import (
    config_dtypes,
    record_test_scores,
    summarise_trial,
    trial_status,
    write_trials,
)

EVIL = "<img src=x onerror=alert(1)>"
MAX_EPOCHS, GRACE, RF = 8, 1, 2  # rungs at epochs 1, 2, 4
STATUS_CYCLE = (
    "finished",
    "stopped",
    "stopped",
    "finished",
    "errored",
    "stopped",
    "diverged",
    "running",
)
# As study.json describes them: Optuna suggest names, some conditional (lr_adam / lr_sgd by
# optimizer, head_width_0 only with head_layers >= 1); the config gets derived keys from them.
HYPERPARAMETERS = {
    "optimizer": {"role": "nuisance", "kind": "categorical", "choices": ["adam", "sgd"]},
    "lr_adam": {"role": "nuisance", "kind": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "lr_sgd": {"role": "nuisance", "kind": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "dropout": {"role": "scientific", "kind": "float", "low": 0.0, "high": 0.5, "log": False},
    "activation": {
        "role": "scientific",
        "kind": "categorical",
        "choices": ["relu", "leaky_relu", "gelu"],
    },
    "batch_size": {"role": "nuisance", "kind": "int", "low": 16, "high": 64, "log": False},
    "head_layers": {"role": "scientific", "kind": "int", "low": 0, "high": 2, "log": False},
    "head_width_0": {"role": "scientific", "kind": "categorical", "choices": [32, 64, 128]},
    "pretrained": {"role": "nuisance", "kind": "categorical", "choices": [True, False]},
    # a 0/1 switch (drawn as two ticks) and numeric categories (ordered as numbers, not text)
    "extra_inception_3": {"role": "scientific", "kind": "int", "low": 0, "high": 1, "log": False},
    "l2": {"role": "nuisance", "kind": "categorical", "choices": [0.0, 1e-5, 1e-4]},
    "image_size": {"role": "fixed", "kind": "categorical", "choices": [32]},
}
TABLES = ("trials", "epochs", "predictions", "gradcam")
# what study.run adds to every trial's config (study.spaces.constants.trial_constants)
CONSTANTS = {"max_epochs": MAX_EPOCHS, "image_size": 32, "metric": "val_acc", "mode": "max"}
# how a trial of each status ended: its last result as the trainable reports it (None: an error)
LAST = {
    "finished": {"end_reason": "max_epochs"},
    "stopped": {},
    "errored": None,
    "diverged": {"end_reason": "diverged", "error": "val_loss is NaN"},
    "running": {},
}
T0 = 1_735_689_600.0  # 2025-01-01 00:00 UTC, when the first trial starts


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _config(rng: np.random.Generator, index: int, seed: int) -> dict:
    opt = ("adam", "sgd")[int(rng.integers(0, 2))]
    lo, hi = (-4, np.log10(3e-3)) if opt == "adam" else (-3, -1)
    n_layers = int(rng.integers(0, 3))
    suggested = {
        "optimizer": opt,
        f"lr_{opt}": float(10 ** rng.uniform(lo, hi)),
        "dropout": float(rng.uniform(0, 0.5)),
        "activation": str(rng.choice(HYPERPARAMETERS["activation"]["choices"])),
        "batch_size": int(rng.integers(16, 65)),
        "head_layers": n_layers,
        "pretrained": bool(rng.integers(0, 2)),
        "extra_inception_3": int(rng.integers(0, 2)),
        "l2": float(rng.choice([0.0, 1e-5, 1e-4])),
    }
    if n_layers:
        suggested["head_width_0"] = int(rng.choice([32, 64, 128]))
    config = {k: v for k, v in suggested.items() if not k.startswith(("lr_", "head_"))}
    return config | {
        "lr": suggested[f"lr_{opt}"],
        "head_dense": json.dumps([suggested.get("head_width_0")] * n_layers),
        **CONSTANTS,
        "seed": seed * 10_000 + index,
        "suggested": suggested,
    }


def _epochs_for(status: str, i: int) -> int:
    return {
        "finished": MAX_EPOCHS,
        "stopped": (1, 2, 4)[i % 3],
        "errored": 0,
        "diverged": 2,
        "running": 3,
    }[status]


def make_study(
    root: Path,
    name: str = "fixture",
    *,
    n_trials: int = 8,
    statuses: list[str] | None = None,
    classes: list[str] | None = None,
    tables: tuple[str, ...] = TABLES,
    study_json: bool = True,
    model: str = "googlenet",
    dataset: str = "toon",
    n_test: int = 40,
    seed: int = 0,
    models: tuple[str, ...] | None = None,
    smoke: bool = False,
) -> Path:
    """Write ``root/name`` with the given tables; returns the study directory. ``models``: the
    model family of trial i is models[i % len(models)] (default: ``model`` for all)."""
    models = models or (model,)
    rng = np.random.default_rng(seed)
    classes = classes or ["happy", "sad", "crying", EVIL]
    statuses = statuses or [STATUS_CYCLE[i % len(STATUS_CYCLE)] for i in range(n_trials)]
    out = Path(root) / name
    out.mkdir(parents=True, exist_ok=True)
    trials, epochs, configs = [], [], []
    for i, status in enumerate(statuses):
        cfg = _config(rng, i, seed)
        # Dropout matters most, then the learning rate (best near 1e-3 for adam, 1e-2 for sgd).
        best_lr = -3 if cfg["optimizer"] == "adam" else -2
        quality = 0.88 - 0.8 * cfg["dropout"] - 0.05 * abs(np.log10(cfg["lr"]) - best_lr)
        family = models[i % len(models)]
        if family != models[0]:  # a weaker second family, so the verdict has a leader
            quality -= 0.1
        n_ep = _epochs_for(status, i)
        e = np.arange(1, n_ep + 1)
        acc = np.clip(quality - (quality - 0.25) * np.exp(-e / 2) + rng.normal(0, 0.01, n_ep), 0, 1)
        loss = 1.6 * (1 - acc) + rng.normal(0, 0.02, n_ep)
        if status == "diverged":
            acc[-1], loss[-1] = 0.25, np.nan
        epoch_s = 2.0 + cfg["batch_size"] / 32
        trial_id = f"t{i:03d}"
        # two trials at a time, each starting when the one two before it ended
        start = T0 + (i // 2) * 40.0 + (i % 2) * 7.0
        epochs += [
            {
                "trial_id": trial_id,
                "epoch": int(k),
                "train_loss": float(l_ * 0.9),
                "train_acc": float(min(1.0, a + 0.05)),
                "val_loss": float(l_),
                "val_acc": float(a),
                "val_macro_f1": float(a * 0.95),
                "epoch_s": epoch_s,
                "images_per_s": 100.0,
                "lr": cfg["lr"],
                "time": start + k * epoch_s,
            }
            for k, a, l_ in zip(e, acc, loss, strict=True)
        ]
        last = LAST[status]
        if last is not None:
            last = {**last, "epoch": n_ep, "params": int(50_000 * (1 + (i + 1) % 4))}
            last |= {"node": "node-0", "device": "cpu"}
        ended = trial_status(last, status == "errored", "RuntimeError: out of memory")
        ended = ("running", "") if status == "running" else ended  # as ResultsWriter marks it
        mine = pd.DataFrame([r for r in epochs if r["trial_id"] == trial_id])
        mine = mine if n_ep else pd.DataFrame(columns=["epoch", "val_acc", "val_loss", "epoch_s"])
        # the runner's own row (study.results.trials), so the report reads what real studies write
        trials.append(
            summarise_trial(trial_id, {**cfg, "model": family}, mine, last, ended, dataset)
        )
        configs.append({**cfg, "model": family})
    tdf = pd.DataFrame(trials)
    done = tdf[tdf["status"] == "finished"].sort_values("val_acc_max", ascending=False)
    preds, cams, scores = [], [], {}
    for rank, (_, row) in enumerate(done.head(2).iterrows()):
        rows = _predictions(rng, row["trial_id"], classes, n_test, float(row["val_acc_max"]))
        correct = np.array([r["label"] == r["pred"] for r in rows], dtype=float)
        half = 1.96 * np.sqrt(correct.mean() * (1 - correct.mean()) / len(correct))
        scores[row["trial_id"]] = {
            "test_acc": correct.mean(),
            "test_macro_f1": correct.mean() * 0.95,
            "test_acc_ci_low": correct.mean() - half,
            "test_acc_ci_high": correct.mean() + half,
        }
        preds += rows
        if rank == 0:
            cams = _gradcam(rng, row["trial_id"], classes)
    meta = {
        "name": name,
        "space": "toon-small",
        "description": "synthetic study for report tests",
        "seed": seed,
        "command": "python -m study.run --space toon-small",
        "started": "2025-01-01T00:00:00+00:00",
        "finished": None if "running" in statuses else "2025-01-01T01:00:00+00:00",
        "git_commit": "0123abc",
        "versions": {"torch": "2.14", "ray": "2.60"},
        "dataset": {
            "name": dataset,
            "version": "1",
            "split_rule": "stratified",
            "classes": classes,
            "counts": {"train": 400, "val": 80, "test": n_test},
        },
        "settings": {
            "metric": "val_acc",
            "mode": "max",
            "max_epochs": MAX_EPOCHS,
            "grace_period": GRACE,
            "reduction_factor": RF,
            "num_samples": len(statuses),
            "image_size": 32,
            "sampler": "tpe",
            "smoke_test": smoke,
        },
        "hyperparameters": HYPERPARAMETERS,
    }
    if study_json:
        (out / "study.json").write_text(json.dumps(meta, indent=2))
    # written as the runner writes them: study.results.tables' declared layout, trials typed by the
    # declared hyperparameters, test scores recorded by trials.parquet's owner after "tuning"
    frames = {
        "epochs": epochs_frame(epochs, name),
        "predictions": pd.DataFrame(preds),
        "gradcam": pd.DataFrame(cams),
    }
    for table in tables:
        if table == "trials":
            write_trials(out, trials, config_dtypes(HYPERPARAMETERS, configs))
            record_test_scores(out, scores)
        else:
            write_parquet(frames[table], out / f"{table}.parquet")
    return out


def _predictions(
    rng: np.random.Generator, trial_id: str, classes: list[str], n: int, acc: float
) -> list[dict]:
    rows = []
    for k in range(n):
        label = classes[k % len(classes)]
        # Rows 0..len(classes)-1 are always wrong so every run has mistakes, incl. the EVIL path.
        wrong = k < len(classes) or rng.random() > acc
        pred = classes[(k + 1) % len(classes)] if wrong else label
        probs = rng.dirichlet(np.ones(len(classes)))
        probs[classes.index(pred)] += 2
        probs /= probs.sum()
        color = np.full((16, 16, 3), 40 * (classes.index(label) + 1), dtype=np.uint8)
        rows.append(
            {
                "trial_id": trial_id,
                "path": f"{EVIL}.png" if k == 0 else f"test/{label}/{k:03d}.png",
                "label": label,
                "pred": pred,
                "confidence": float(probs.max()),
                **{f"prob_{c}": float(p) for c, p in zip(classes, probs, strict=True)},
                "thumb": png(color) if wrong or k % 5 == 0 else None,
            }
        )
    return rows


def _gradcam(
    rng: np.random.Generator, trial_id: str, classes: list[str], side: int = 16, per_class: int = 2
) -> list[dict]:
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1)
    rows = []
    for c in classes:
        for k in range(per_class):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            cam = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05).astype(np.float32)
            image = (rng.uniform(0, 1, (side, side, 3)) * 255).astype(np.uint8)
            rows.append(
                {
                    "trial_id": trial_id,
                    "path": f"test/{c}/cam{k}.png",
                    "label": c,
                    "pred": c,
                    "confidence": 0.8,
                    "image": png(image),
                    "cam": cam.ravel().tolist(),
                    "cam_size": side,
                }
            )
    return rows
