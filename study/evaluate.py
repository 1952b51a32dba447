"""Test-split evaluation of a study's best trials, and applying them to any class-per-folder tree.

`python -m study.evaluate STUDY_DIR --source FOLDER [--label-map a=b,...] [--top K]`
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import torch

from study import storage
from study.chance import Baseline, at_chance_trials
from study.config import TrainConfig
from study.confirmed import TTA_MODES
from study.data import Augment, AugmentConfig, SplitArrays
from study.folder_source import FolderPlan, decode_folder, parse_label_map, plan_folder
from study.gradcam import grad_cam, png_bytes
from study.metrics import bootstrap_ci, confusion_counts, macro_f1, precision_recall_f1, ranked
from study.models import input_norm
from study.steps import build_model, pick_device, predict
from study.tables import STUDY_JSON, TRIALS, read_json, read_table

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


def select_top(
    trials: pd.DataFrame, k: int, settings: dict[str, Any], chance: Baseline | None = None
) -> list[str]:
    """Best K finished or ASHA-stopped trials by the study metric on validation (the ranking the
    report uses); running, diverged and errored trials are never candidates. Given `chance`,
    trials whose best validation accuracy does not beat guessing (study.chance) are left out
    while any trial that beat it remains."""
    done = trials[trials["status"].isin(["finished", "stopped"])]
    if chance is not None:
        learned = done[~at_chance_trials(done, chance)]
        done = learned if len(learned) else done
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
    for rank, tid in enumerate(trial_ids):
        model, _ = load_best_model(study_dir, tid, len(ds.classes), device)
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


class UsageError(ValueError):
    """argparse's complaint, reported like every other bad input: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def read_study(study_dir: str) -> tuple[dict[str, Any], pd.DataFrame, list[str], int]:
    """study.json, trials.parquet, the study's classes and image size; a named error if unusable."""
    path = storage.join(study_dir, STUDY_JSON)
    if not storage.is_file(path):
        raise ValueError(
            f"{path}: no such file (expected a study directory of python -m study.run)"
        )
    try:
        meta = read_json(path)
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    classes = meta.get("dataset", {}).get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise ValueError(
            f"{path}: dataset.classes must list at least 2 class names, not {classes!r}"
        )
    size = meta.get("settings", {}).get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{path}: settings.image_size must be a positive integer, not {size!r}")
    trials = read_table(study_dir, TRIALS)
    if trials is None:
        raise ValueError(f"{study_dir}: no {TRIALS} (has the study run?)")
    return meta, trials, classes, size


def trials_with_checkpoints(
    study_dir: str, trials: pd.DataFrame, settings: dict[str, Any], k: int
) -> tuple[list[str], list[str]]:
    """The best k finished or stopped trials (select_top's ranking) that left best weights and
    their params.json, and the better-ranked ones passed over because they did not."""
    ranking = select_top(trials, len(trials), settings)
    if not ranking:
        raise ValueError(
            f"{study_dir}: no finished or stopped trial in {TRIALS}; nothing to evaluate"
        )
    chosen: list[str] = []
    passed_over: list[str] = []
    for tid in ranking:
        if len(chosen) == k:
            break
        ckpt = latest_checkpoint(storage.join(study_dir, tid))
        usable = (
            ckpt is not None
            and storage.is_file(storage.join(ckpt, "best.pt"))
            and storage.is_file(storage.join(study_dir, tid, "params.json"))
        )
        (chosen if usable else passed_over).append(tid)
    if not chosen:
        raise ValueError(
            f"{study_dir}: no trial left a checkpoint (checkpoint_*/best.pt and params.json) "
            f"among its {len(ranking)} finished or stopped trials; nothing to evaluate"
        )
    return chosen, passed_over


def load_final_model(study_dir: str, num_classes: int, device: torch.device):
    """The study's refit model (final_model/ of --refit), or None if it has none."""
    from study.transfer import final_model

    found = final_model(study_dir)
    if found is None:
        return None
    meta, weights = found
    cfg = TrainConfig.from_config(meta["config"])
    model = build_model(cfg, num_classes, device)
    state = torch.load(
        io.BytesIO(storage.read_bytes(weights)), map_location=device, weights_only=True
    )
    model.load_state_dict(state)
    return model.eval(), meta


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = _Parser(
        prog=prog or "python -m study.evaluate",
        description="Score a study's best trials (by validation) on another class-per-folder "
        "image tree: accuracy with its 95 % CI and macro-F1 per trial, over the classes the "
        "tree shares with the study (a cross-style check; the study's own test split is scored "
        "by study run).",
    )
    p.add_argument(
        "study_dir", help="a study directory written by study run (a path or s3:// / gs:// URI)"
    )
    p.add_argument("--source", required=True, help="class-per-folder image tree (or .zip)")
    p.add_argument(
        "--label-map", default=None, help="FOLDER=STUDY_CLASS,... where folder names differ"
    )
    p.add_argument(
        "--top",
        type=int,
        default=None,
        help="evaluate the best K trials (by validation); default: the study's final model "
        "(--refit) if it has one, else the best trial",
    )
    p.add_argument("--ensemble", type=int, default=0, help="also the best K trials averaged")
    p.add_argument("--tta", default="none", choices=TTA_MODES, help="also with the mirror image")
    p.add_argument(
        "--out", default=None, help="where scores.json/.parquet go (default: STUDY/evaluations/SRC)"
    )
    try:  # every check before any image is decoded or model loaded
        a = p.parse_args(argv)
        if a.top is not None and a.top < 1:
            raise ValueError(f"--top {a.top}: expected the number of best trials, an integer >= 1")
        if a.ensemble < 0 or a.ensemble == 1:
            raise ValueError(f"--ensemble {a.ensemble}: expected an integer >= 2 (models averaged)")
        label_map = parse_label_map(a.label_map)
        study_dir = storage.absolute(a.study_dir)
        meta, trials, classes, size = read_study(study_dir)
        use_final = a.top is None and storage.is_file(
            storage.join(study_dir, "final_model", "final.json")
        )
        k = max(a.top or (0 if use_final else 1), a.ensemble)
        chosen, passed_over = (
            trials_with_checkpoints(study_dir, trials, meta["settings"], k) if k else ([], [])
        )
        if a.ensemble and len(chosen) < a.ensemble:
            raise ValueError(
                f"--ensemble {a.ensemble}: only {len(chosen)} trials of {study_dir} "
                "have checkpoints"
            )
        plan = plan_folder(a.source, classes, label_map)
        arr, bad = decode_folder(plan, a.source, classes, size)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for paths in plan.conflicts:
        print(
            f"warning: one file (same sha256) under different classes, left out of scoring as no "
            f"label can be trusted: {', '.join(paths)}",
            file=sys.stderr,
        )
    for path, reason in bad:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if passed_over:
        print(f"note: better-ranked trials without a checkpoint: {', '.join(passed_over)}")
    singles = [] if use_final and a.top is None else chosen[: a.top or 1]
    out = a.out or storage.join(study_dir, "evaluations", storage.basename(a.source.rstrip("/")))
    return score_folder(
        a, study_dir, singles, chosen[: a.ensemble], use_final, arr, classes, plan, bad, out
    )


def score_folder(
    a,
    study_dir: str,
    trial_ids: list[str],
    ensemble: list[str],
    use_final: bool,
    arr,
    classes: list[str],
    plan: FolderPlan,
    bad: list[tuple[str, str]],
    out: str,
) -> int:
    """Score each model (final, trials, ensemble; each also with --tta) the honest way
    (`study.cross_style`): print, and write scores.json / scores.parquet to `out`."""
    from study.cross_style import report, scores

    device = pick_device()
    modes = list(dict.fromkeys(["none", a.tta]))
    results: dict[str, dict[str, Any]] = {}
    members: dict[str, np.ndarray] = {}
    try:
        models = []
        if use_final:
            model, fmeta = load_final_model(study_dir, len(classes), device)
            models.append((f"final ({fmeta.get('trial_id', '?')} refit)", model))
        for tid in dict.fromkeys([*trial_ids, *ensemble]):
            models.append((tid, load_best_model(study_dir, tid, len(classes), device)[0]))
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        print(f"error: cannot load the model's weights ({e})", file=sys.stderr)
        return 2
    for name, model in models:
        for mode in modes:
            probs = probabilities(model, arr, device, mode)
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


if __name__ == "__main__":
    sys.exit(main())
