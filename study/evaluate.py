"""Test-split evaluation of a study's best trials, and applying them to any class-per-folder tree.

`python -m study.evaluate STUDY_DIR --source FOLDER [--label-map a=b,...] [--top K]`
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any

import numpy as np
import pandas as pd
import torch

from study import storage
from study.config import TrainConfig
from study.data import Augment, AugmentConfig, SplitArrays
from study.gradcam import grad_cam, png_bytes
from study.metrics import bootstrap_ci, confusion_counts, macro_f1, precision_recall_f1, ranked
from study.results import STUDY_JSON, TRIALS, read_json, read_table
from study.trainable import build_model, pick_device, predict

THUMB_MISSES = 64  # thumbnails stored per trial for the report's gallery of mistakes


def latest_checkpoint(trial_dir: str) -> str | None:
    """The newest `checkpoint_NNNNNN` directory of a trial (a local path or a URI)."""
    ckpts = [d for d in storage.list_dirs(trial_dir) if d.startswith("checkpoint_")]
    ckpts.sort(key=lambda name: int(name.split("_")[-1]))
    return storage.join(trial_dir, ckpts[-1]) if ckpts else None


def trial_config(study_dir: str, trial_id: str) -> dict[str, Any]:
    """The exact config a trial trained with (Ray writes it next to the trial's checkpoints)."""
    path = storage.join(study_dir, trial_id, "params.json")
    if not storage.is_file(path):
        raise FileNotFoundError(f"trial {trial_id}: no {path}")
    return read_json(path)


def load_best_model(study_dir: str, trial_id: str, num_classes: int, device: torch.device):
    """The trial's best-validation weights (best.pt of its latest checkpoint)."""
    cfg = TrainConfig.from_config(trial_config(study_dir, trial_id))
    trial_dir = storage.join(study_dir, trial_id)
    ckpt = latest_checkpoint(trial_dir)
    if ckpt is None:
        raise FileNotFoundError(f"trial {trial_id}: no checkpoint under {trial_dir}")
    model = build_model(cfg, num_classes, device)
    blob = io.BytesIO(storage.read_bytes(storage.join(ckpt, "best.pt")))
    state = torch.load(blob, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.eval(), cfg


def select_top(trials: pd.DataFrame, k: int, settings: dict[str, Any]) -> list[str]:
    """Best K finished or ASHA-stopped trials by the study metric on validation (the ranking the
    report uses); running, diverged and errored trials are never candidates."""
    done = trials[trials["status"].isin(["finished", "stopped"])]
    return ranked(done, settings)["trial_id"].head(k).tolist()


def score(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    pred = probs.argmax(1)
    acc, low, high = bootstrap_ci(pred == labels)
    counts = confusion_counts(labels, pred, len(classes))
    p, r, f = precision_recall_f1(counts)
    return {
        "test_acc": acc,
        "test_acc_ci_low": low,
        "test_acc_ci_high": high,
        "test_macro_f1": macro_f1(labels, pred, len(classes)),
        "per_class": {
            c: {"precision": p[i], "recall": r[i], "f1": f[i], "support": int(counts[i].sum())}
            for i, c in enumerate(classes)
        },
        "confusion": counts.tolist(),
    }


def prediction_rows(
    trial_id: str, arr: SplitArrays, probs: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    pred = probs.argmax(1)
    df = pd.DataFrame(
        {
            "trial_id": trial_id,
            "path": arr.paths,
            "label": [classes[i] for i in arr.labels],
            "pred": [classes[i] for i in pred],
            "confidence": probs.max(1),
        }
    )
    for i, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, i]
    wrong = np.flatnonzero(pred != arr.labels)
    wrong = wrong[np.argsort(-probs.max(1)[wrong], kind="stable")][:THUMB_MISSES]
    thumbs: list[bytes | None] = [None] * len(df)
    for i in wrong:
        thumbs[i] = png_bytes(np.asarray(arr.images[i]))
    df["thumb"] = thumbs
    return df


def gradcam_rows(
    model,
    trial_id: str,
    arr: SplitArrays,
    probs: np.ndarray,
    classes: list[str],
    per_class: int,
    device: torch.device,
) -> pd.DataFrame:
    """A few test images per class: the image, what the model predicted, and where it looked."""
    idx = np.concatenate([np.flatnonzero(arr.labels == k)[:per_class] for k in range(len(classes))])
    if len(idx) == 0:
        return pd.DataFrame()
    images = np.ascontiguousarray(arr.images[idx])
    x = Augment(AugmentConfig(flip=0))(torch.from_numpy(images).to(device), train=False)
    pred = probs[idx].argmax(1)
    cams = grad_cam(model, x, torch.from_numpy(pred).to(device))
    return pd.DataFrame(
        {
            "trial_id": trial_id,
            "path": [arr.paths[i] for i in idx],
            "label": [classes[arr.labels[i]] for i in idx],
            "pred": [classes[p] for p in pred],
            "confidence": probs[idx].max(1),
            "image": [png_bytes(im) for im in images],
            "cam": [c.astype(np.float32).ravel().tolist() for c in cams],
            "cam_size": images.shape[-1],
        }
    )


def evaluate_on_test(
    study_dir: str,
    data_dir: str,
    dataset: str,
    trial_ids: list[str],
    image_size: int,
    gradcam_per_class: int = 3,
) -> dict[str, Any]:
    """Runs once, after tuning, as a Ray task (so it gets a GPU where trials got one).

    This is the only place the test split is read.
    """
    from study.data import load_split, open_dataset

    ds = open_dataset(data_dir, dataset)
    test = load_split(ds, "test", image_size)
    device = pick_device()
    metrics, preds, cams = {}, [], []
    aug = Augment(AugmentConfig(flip=0))
    for rank, tid in enumerate(trial_ids):
        model, _ = load_best_model(study_dir, tid, len(ds.classes), device)
        probs = predict(model, test, aug, device)
        metrics[tid] = score(test.labels, probs, ds.classes)
        preds.append(prediction_rows(tid, test, probs, ds.classes))
        if rank == 0 and gradcam_per_class:
            cams.append(
                gradcam_rows(model, tid, test, probs, ds.classes, gradcam_per_class, device)
            )
    return {
        "metrics": metrics,
        "predictions": pd.concat(preds) if preds else pd.DataFrame(),
        "gradcam": pd.concat(cams) if cams else pd.DataFrame(),
    }


def parse_label_map(text: str | None) -> dict[str, str]:
    """`a=b,c=d`: folder class a is the study's class b."""
    out: dict[str, str] = {}
    for part in filter(None, (text or "").split(",")):
        if "=" not in part:
            raise ValueError(f"--label-map {part!r}: expected FOLDER_CLASS=STUDY_CLASS pairs")
        k, v = (s.strip() for s in part.split("=", 1))
        out[k] = v
    return out


def load_folder(
    source: str,
    classes: list[str],
    label_map: dict[str, str],
    image_size: int,
) -> tuple[SplitArrays, list[str]]:
    """Decode a class-per-folder tree, keeping only classes the study knows (after mapping)."""
    from study.data.decode import BadImage, decode_rgb, resize_square
    from study.data.sources import read_class_folders

    items, _ = read_class_folders(source)
    unknown = sorted(set(label_map.values()) - set(classes))
    if unknown:
        raise ValueError(f"--label-map maps to {unknown}, not classes of the study ({classes})")
    keep = [(i, label_map.get(i.label, i.label)) for i in items]
    keep = [(i, lab) for i, lab in keep if lab in classes]
    if not keep:
        raise ValueError(
            f"{source}: no class folder matches the study's classes {classes}; "
            "map names with --label-map a=b"
        )
    images, labels, paths = [], [], []
    for item, lab in keep:
        try:
            images.append(resize_square(decode_rgb(item.read()), image_size))
        except BadImage as e:
            print(f"skipped {item.path}: {e}", file=sys.stderr)
            continue
        labels.append(classes.index(lab))
        paths.append(item.path)
    shared = sorted({lab for _, lab in keep}, key=classes.index)
    return SplitArrays(np.stack(images), np.asarray(labels, np.int64), paths), shared


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.evaluate", description=__doc__)
    p.add_argument("study_dir")
    p.add_argument("--source", required=True, help="class-per-folder image tree (or .zip)")
    p.add_argument(
        "--label-map", default=None, help="FOLDER_CLASS=STUDY_CLASS,... where names differ"
    )
    p.add_argument("--top", type=int, default=1, help="evaluate the best K trials (by validation)")
    a = p.parse_args(argv)
    study_dir = storage.absolute(a.study_dir)
    try:
        meta = read_json(storage.join(study_dir, STUDY_JSON))
        trials = read_table(study_dir, TRIALS)
        if trials is None:
            raise ValueError(f"{study_dir}: no {TRIALS} (has the study run?)")
        classes = meta["dataset"]["classes"]
        size = int(meta["settings"]["image_size"])
        arr, shared = load_folder(a.source, classes, parse_label_map(a.label_map), size)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = pick_device()
    aug = Augment(AugmentConfig(flip=0))
    idx = [classes.index(c) for c in shared]
    labels = np.searchsorted(idx, arr.labels)  # positions among the shared classes
    rows = []
    for tid in select_top(trials, a.top, meta["settings"]):
        model, _ = load_best_model(study_dir, tid, len(classes), device)
        probs = predict(model, arr, aug, device)[:, idx]  # only the shared classes compete
        m = score(labels, probs, shared)  # the runner's test scoring, on this source
        rows.append(
            {
                "trial_id": tid,
                "images": len(labels),
                "accuracy": m["test_acc"],
                "ci_low": m["test_acc_ci_low"],
                "ci_high": m["test_acc_ci_high"],
                "macro_f1": m["test_macro_f1"],
            }
        )
    print(f"{a.source}: {len(arr.labels)} images in shared classes {', '.join(shared)}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
