"""Loading a study's trained models and scoring images with them (torch): the test split after
tuning, and any class-per-folder tree for `study.evaluate` (whose command line, torch-free, is
study/evaluate.py).

A weights file that is missing, damaged or does not fit its model is a StudyFileError naming it
(`study.training.checkpoints.read_weights`).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd
import torch

from study import storage
from study.data import Augment, AugmentConfig, SplitArrays, load_split
from study.data.store import PreparedDataset
from study.evaluation.confirm_options import TTA_MODES
from study.evaluation.cross_style import report, scores
from study.evaluation.folder_source import FolderPlan
from study.evaluation.gradcam import grad_cam, png_bytes
from study.models import input_interpolation, input_norm
from study.results.errors import StudyFileError
from study.results.lookups import (
    FINAL_DIR,
    FINAL_JSON,
    final_model,
    latest_checkpoint,
    trial_config,
)
from study.results.statistics import (
    accuracy_ci,
    confusion_counts,
    macro_f1,
    precision_recall_f1,
)
from study.training.checkpoints import BEST, load_weights
from study.training.config import TrainConfig
from study.training.steps import build_model, pick_device, predict

THUMB_MISSES = 64  # thumbnails stored per trial for the report's gallery of mistakes


def load_best_model(study_dir: str, trial_id: str, num_classes: int, device: torch.device):
    """The trial's best-validation weights (best.pt of its latest checkpoint)."""
    cfg = TrainConfig.from_config(trial_config(study_dir, trial_id))
    trial_dir = storage.join(study_dir, trial_id)
    ckpt = latest_checkpoint(trial_dir)
    if ckpt is None:
        raise FileNotFoundError(f"trial {trial_id}: no checkpoint under {trial_dir}")
    model = build_model(cfg, num_classes, device)
    load_weights(model, storage.join(ckpt, BEST), device)
    return model.eval(), cfg


def probabilities(
    model: torch.nn.Module, arr: SplitArrays, device: torch.device, tta: str = "none"
) -> np.ndarray:
    """Class probabilities of every image, normalised as the model's weights expect; with
    `tta="hflip"` the mean of the image's and its mirror image's probabilities."""
    if tta not in TTA_MODES:
        raise ValueError(f"--tta {tta!r}: expected one of {', '.join(TTA_MODES)}")
    aug = Augment(AugmentConfig(flip=0), *input_norm(model))
    probs = predict(model, arr, aug, device)
    if tta == "hflip" and len(arr.labels):
        mirrored = SplitArrays(np.ascontiguousarray(arr.images[..., ::-1]), arr.labels, arr.paths)
        probs = (probs + predict(model, mirrored, aug, device)) / 2
    return probs


def score(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    pred = probs.argmax(1)
    acc, low, high = accuracy_ci(pred == labels)
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
    seed: int = 0,
) -> pd.DataFrame:
    """A few test images per class: the image, what the model predicted, and where it looked.

    Sampled, seeded, across groups: a path's first folder is its group (the toon character,
    the FERG person), and each class takes one image per group, in shuffled group order, before
    a second from any group. The first images in path order would all show one character."""
    rng = np.random.default_rng(seed)
    picks = []
    for k in range(len(classes)):
        members = rng.permutation(np.flatnonzero(arr.labels == k))
        groups = pd.Series([str(arr.paths[i]).replace("\\", "/").split("/")[0] for i in members])
        turn = groups.groupby(groups, sort=False).cumcount().to_numpy()  # nth image of its group
        picks.append(members[np.argsort(turn, kind="stable")][:per_class])
    idx = np.concatenate(picks) if picks else np.array([], dtype=np.int64)
    if len(idx) == 0:
        return pd.DataFrame()
    images = np.ascontiguousarray(arr.images[idx])
    norm = Augment(AugmentConfig(flip=0), *input_norm(model))
    x = norm(torch.from_numpy(images).to(device), train=False)
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
    ds: PreparedDataset,
    trial_ids: list[str],
    image_size: int,
    gradcam_per_class: int = 3,
) -> dict[str, Any]:
    """Runs once, after tuning: as a Ray task where trials got a GPU or ran on a cluster (so it
    runs where they ran), else in the driver (study.evaluation.test_split.evaluates_here).

    This is the only place the test split is read.
    """
    device = pick_device()
    metrics, preds, cams = {}, [], []
    tests: dict[str, SplitArrays] = {}  # the test split once per resize filter the models need
    for rank, tid in enumerate(trial_ids):
        model, _ = load_best_model(study_dir, tid, len(ds.classes), device)
        interpolation = input_interpolation(model)
        if interpolation not in tests:
            tests[interpolation] = load_split(ds, "test", image_size, interpolation)
        test = tests[interpolation]
        probs = probabilities(model, test, device)
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


def load_final_model(study_dir: str, num_classes: int, device: torch.device):
    """The study's refit model (final_model/ of --refit), or None if it has none; a StudyFileError
    naming final.json or model.pt when one is damaged, or model.pt is missing."""
    found = final_model(study_dir)
    if found is None:
        return None
    meta, weights = found
    cfg = TrainConfig.from_config(meta["config"])
    model = build_model(cfg, num_classes, device)
    load_weights(model, weights, device)
    return model.eval(), meta


def score_folder(
    a,
    study_dir: str,
    trial_ids: list[str],
    ensemble: list[str],
    use_final: bool,
    arrays: dict[str, SplitArrays],
    classes: list[str],
    plan: FolderPlan,
    bad: list[tuple[str, str]],
    out: str,
) -> int:
    """Score each model (final, trials, ensemble; each also with --tta) the honest way
    (`study.evaluation.cross_style`): print, and write scores.json / scores.parquet to `out`.
    `arrays`: the folder decoded once per resize filter the models need (`input_interpolation`), the
    same images in the same order."""
    device = pick_device()
    arr = next(iter(arrays.values()))  # labels and paths: the same in every decoding
    modes = list(dict.fromkeys(["none", a.tta]))
    results: dict[str, dict[str, Any]] = {}
    members: dict[str, np.ndarray] = {}
    try:
        models = []
        if use_final:
            found = load_final_model(study_dir, len(classes), device)
            if found is None:  # final.json was there when the command checked its inputs
                path = storage.join(study_dir, FINAL_DIR, FINAL_JSON)
                raise StudyFileError(path, "gone since the command started", "run it again")
            model, fmeta = found
            models.append((f"final ({fmeta.get('trial_id', '?')} refit)", model))
        for tid in dict.fromkeys([*trial_ids, *ensemble]):
            models.append((tid, load_best_model(study_dir, tid, len(classes), device)[0]))
    except StudyFileError as e:  # names the file and what to do
        print(f"error: {storage.redact(str(e))}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        print(f"error: cannot load the model's weights ({storage.redact(str(e))})", file=sys.stderr)
        return 2
    for name, model in models:
        for mode in modes:
            probs = probabilities(model, arrays[input_interpolation(model)], device, mode)
            members[f"{name}|{mode}"] = probs
            if name in ensemble and name not in trial_ids:
                continue
            results[name + ("" if mode == "none" else f" +{mode}")] = scores(
                arr.labels, probs, classes
            )
    for mode in modes if ensemble else []:
        mean = np.mean([members[f"{t}|{mode}"] for t in ensemble], axis=0)
        name = f"ensemble of {len(ensemble)}" + ("" if mode == "none" else f" +{mode}")
        results[name] = scores(arr.labels, mean, classes)
    report(a.source, classes, arr, plan, bad, results, out)
    print(f"wrote {storage.join(out, 'scores.json')} and scores.parquet", file=sys.stderr)
    return 0
