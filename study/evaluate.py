"""Test-split evaluation of a study's best trials, and applying them to any class-per-folder tree.

`python -m study.evaluate STUDY_DIR --source FOLDER [--label-map a=b,...] [--top K]`
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from study.config import TrainConfig
from study.data import Augment, AugmentConfig, SplitArrays
from study.gradcam import grad_cam, png_bytes
from study.metrics import bootstrap_ci, confusion_counts, macro_f1, precision_recall_f1
from study.results import STUDY_JSON, TRIALS, read_table
from study.trainable import build_model, pick_device, predict

THUMB_MISSES = 64  # thumbnails stored per trial for the report's gallery of mistakes


def latest_checkpoint(trial_dir: Path) -> Path | None:
    ckpts = sorted(trial_dir.glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[-1]))
    return ckpts[-1] if ckpts else None


def trial_config(study_dir: Path, trial_id: str) -> dict[str, Any]:
    """The exact config a trial trained with (Ray writes it next to the trial's checkpoints)."""
    path = study_dir / trial_id / "params.json"
    if not path.exists():
        raise FileNotFoundError(f"trial {trial_id}: no {path}")
    return json.loads(path.read_text())


def load_best_model(study_dir: Path, trial_id: str, num_classes: int, device: torch.device):
    """The trial's best-validation weights (best.pt of its latest checkpoint)."""
    cfg = TrainConfig.from_config(trial_config(study_dir, trial_id))
    ckpt = latest_checkpoint(study_dir / trial_id)
    if ckpt is None:
        raise FileNotFoundError(f"trial {trial_id}: no checkpoint under {study_dir / trial_id}")
    model = build_model(cfg, num_classes, device)
    state = torch.load(ckpt / "best.pt", map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.eval(), cfg


def select_top(trials: pd.DataFrame, k: int, mode: str = "max") -> list[str]:
    """Best K trials by validation accuracy only; diverged/errored trials are never candidates."""
    ok = trials[trials["status"].isin(["finished", "stopped"]) & trials["val_acc_max"].notna()]
    ok = ok.sort_values(["val_acc_max", "val_acc_avg"], ascending=mode == "min")
    return ok["trial_id"].head(k).tolist()


def score(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    pred = probs.argmax(1)
    acc, low, high = bootstrap_ci(pred == labels)
    counts = confusion_counts(labels, pred, len(classes))
    p, r, f = precision_recall_f1(counts)
    return {"test_acc": acc, "test_acc_ci_low": low, "test_acc_ci_high": high,
            "test_macro_f1": macro_f1(labels, pred, len(classes)),
            "per_class": {c: {"precision": p[i], "recall": r[i], "f1": f[i],
                              "support": int(counts[i].sum())} for i, c in enumerate(classes)},
            "confusion": counts.tolist()}


def prediction_rows(trial_id: str, arr: SplitArrays, probs: np.ndarray,
                    classes: list[str]) -> pd.DataFrame:
    pred = probs.argmax(1)
    df = pd.DataFrame({"trial_id": trial_id, "path": arr.paths,
                       "label": [classes[i] for i in arr.labels],
                       "pred": [classes[i] for i in pred], "confidence": probs.max(1)})
    for i, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, i]
    wrong = np.flatnonzero(pred != arr.labels)
    wrong = wrong[np.argsort(-probs.max(1)[wrong], kind="stable")][:THUMB_MISSES]
    thumbs: list[bytes | None] = [None] * len(df)
    for i in wrong:
        thumbs[i] = png_bytes(np.asarray(arr.images[i]))
    df["thumb"] = thumbs
    return df


def gradcam_rows(model, trial_id: str, arr: SplitArrays, probs: np.ndarray, classes: list[str],
                 per_class: int, device: torch.device) -> pd.DataFrame:
    """A few test images per class: the image, what the model predicted, and where it looked."""
    idx = np.concatenate([np.flatnonzero(arr.labels == k)[:per_class] for k in range(len(classes))])
    if len(idx) == 0:
        return pd.DataFrame()
    images = np.ascontiguousarray(arr.images[idx])
    x = Augment(AugmentConfig(flip=0))(torch.from_numpy(images).to(device), train=False)
    pred = probs[idx].argmax(1)
    cams = grad_cam(model, x, torch.from_numpy(pred).to(device))
    return pd.DataFrame({
        "trial_id": trial_id, "path": [arr.paths[i] for i in idx],
        "label": [classes[arr.labels[i]] for i in idx], "pred": [classes[p] for p in pred],
        "confidence": probs[idx].max(1), "image": [png_bytes(im) for im in images],
        "cam": [c.astype(np.float32).ravel().tolist() for c in cams], "cam_size": images.shape[-1],
    })


def evaluate_on_test(study_dir: str, data_dir: str, dataset: str, trial_ids: list[str],
                     image_size: int, gradcam_per_class: int = 3) -> dict[str, Any]:
    """Runs once, after tuning, as a Ray task (so it gets a GPU where trials got one).

    This is the only place the test split is read.
    """
    from study.data import load_split, open_dataset

    study_dir_p = Path(study_dir)
    ds = open_dataset(data_dir, dataset)
    test = load_split(ds, "test", image_size)
    device = pick_device()
    metrics, preds, cams = {}, [], []
    aug = Augment(AugmentConfig(flip=0))
    for rank, tid in enumerate(trial_ids):
        model, _ = load_best_model(study_dir_p, tid, len(ds.classes), device)
        probs = predict(model, test, aug, device)
        metrics[tid] = score(test.labels, probs, ds.classes)
        preds.append(prediction_rows(tid, test, probs, ds.classes))
        if rank == 0 and gradcam_per_class:
            cams.append(gradcam_rows(model, tid, test, probs, ds.classes, gradcam_per_class, device))
    return {"metrics": metrics, "predictions": pd.concat(preds) if preds else pd.DataFrame(),
            "gradcam": pd.concat(cams) if cams else pd.DataFrame()}
