"""The linear-probe baseline: logistic regression on a pretrained backbone's frozen features, the
bar that tuning must beat.

For each pretrained backbone the space uses (`backbones`: the covering configs' models with
`pretrained` set), the study's own splits at its image size, resized and normalised as the weights
expect, go once through the frozen backbone; each image's pooled features are averaged with its
mirror image's. scikit-learn's LogisticRegression (features standardised on train) is fitted on
train for each C of `C_GRID`; the C with the best validation accuracy is kept (the smaller C on a
tie), and only then is the test split read and scored, once, with its exact interval. The test
split chooses nothing. Rows go to confirm.parquet (kind "probe", study.results.confirmed).

It runs after the test evaluation and the confirmation, where they run (`study.run.driver`):
never on an interrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

from study import console
from study.data import Augment, AugmentConfig, SplitArrays, load_split
from study.data.store import DataChangedError, PreparedDataset
from study.evaluation.test_split import evaluates_here, run_evaluation
from study.models import create_model, input_interpolation, input_norm
from study.models.catalog import TransferOptions
from study.results import confirmed
from study.results.statistics import accuracy_ci, macro_f1
from study.spaces.cover import cover_space
from study.training.config import TrainConfig
from study.training.steps import pick_device

# inverse L2 strengths tried on standardised features: from a near-constant model to almost none
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
# options that shape the head or the training, never the frozen features
_HEAD_OPTIONS = frozenset(
    {f.name for f in dataclasses.fields(TransferOptions)} | {"head_dense", "dropout"}
)


@dataclass(frozen=True)
class Backbone:
    """A pretrained backbone as the space builds it: its model name and the options that shape
    its features (`pretrained` among them), as sorted JSON (hashable, the same for equal ones)."""

    model: str
    options_json: str

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json)


def backbones(fn, settings, constants: dict[str, Any]) -> tuple[Backbone, ...]:
    """Every pretrained backbone a config of the space can use (each categorical choice, through
    `cover_space`), in the order the cover meets them. Torch-free: the options are parsed, no
    model is built."""
    found: dict[Backbone, None] = {}
    for cfg in cover_space(fn, settings).configs:
        tc = TrainConfig.from_config({**constants, **cfg, "seed": 0})
        options = dict(tc.model_options)
        if options.get("pretrained") in (None, False):
            continue
        kept = {k: v for k, v in options.items() if k not in _HEAD_OPTIONS}
        found[Backbone(tc.model, json.dumps(kept, sort_keys=True))] = None
    return tuple(found)


def plan(
    flag: bool | None, fn, settings, constants: dict[str, Any], space: str
) -> tuple[Backbone, ...]:
    """The backbones a run probes: with `--probe` every pretrained one of the space (an error if
    it has none), by default the same without the error, none with `--no-probe`. Before Ray."""
    if flag is False:
        return ()
    found = backbones(fn, settings, constants)
    if flag and not found:
        raise ValueError(
            f"--probe: space {space} uses no pretrained backbone (no config sets pretrained, "
            "or --smoke-test turns it off), so there is no frozen feature to probe; drop --probe"
        )
    return found


# ----------------------------------------------------------------------------- features, fit


@torch.inference_mode()
def features(model, arr: SplitArrays, device: torch.device, batch_size: int = 128) -> np.ndarray:
    """Pooled backbone features of every image, each the mean of the image's and its mirror
    image's, normalised as the model's weights expect (float32, N x F)."""
    norm = Augment(AugmentConfig(flip=0), *input_norm(model))
    out = []
    for start in range(0, len(arr.labels), batch_size):
        # a copy: the split's images are a read-only memory map of the decoded cache
        x = torch.from_numpy(np.array(arr.images[start : start + batch_size]))
        x = norm(x.to(device), train=False)
        f = (model.backbone(x) + model.backbone(x.flip(-1))) / 2
        out.append(f.float().flatten(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def choose_c(
    train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], grid=C_GRID
) -> tuple[Any, float, float]:
    """(the fitted probe, its C, its validation accuracy): the C of `grid` with the best
    validation accuracy, the smaller one on a tie. Only train and val are seen here."""
    if len(np.unique(train[1])) < 2:
        raise ValueError("the training split has fewer than 2 classes: nothing to separate")
    if not len(val[1]):
        raise ValueError("the validation split is empty: no C can be chosen")
    # imported here (as in study.data.folds): scikit-learn takes ~2 s to import
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best: tuple[Any, float, float] | None = None
    for c in sorted(grid):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        clf.fit(*train)
        acc = float((clf.predict(val[0]) == val[1]).mean())
        if best is None or acc > best[2]:
            best = (clf, c, acc)
    assert best is not None
    return best


def probe_backbone(
    ds: PreparedDataset, image_size: int, backbone: Backbone, device: torch.device
) -> dict[str, Any]:
    """One backbone's row: features of train and val, C chosen on val, then test scored once."""
    model = create_model(backbone.model, len(ds.classes), **backbone.options).eval().to(device)
    resize = input_interpolation(model)
    split = {s: load_split(ds, s, image_size, resize) for s in ("train", "val")}
    train, val = ((features(model, split[s], device), split[s].labels) for s in ("train", "val"))
    clf, c, val_acc = choose_c(train, val)
    k = len(ds.classes)
    # C is chosen: only now the test split is read
    test = load_split(ds, "test", image_size, resize)
    pred = clf.predict(features(model, test, device))
    acc, low, high = accuracy_ci(pred == test.labels)
    return {
        "n_train": len(train[1]),
        "n_val": len(val[1]),
        "val_acc": val_acc,
        "val_macro_f1": macro_f1(val[1], clf.predict(val[0]), k),
        "test_acc": acc,
        "test_acc_ci_low": low,
        "test_acc_ci_high": high,
        "test_macro_f1": macro_f1(test.labels, pred, k),
        "probe_c": c,
    }


def probe_job(
    ds: PreparedDataset, image_size: int, found: tuple[Backbone, ...]
) -> list[dict[str, Any]]:
    """Every backbone's row (in this process or as a Ray task: `run`); a backbone that fails
    (missing weights, a split with one class) is a row with its error, the others still run."""
    device = pick_device()
    rows = []
    for b in found:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"kind": confirmed.PROBE, "trial_id": "", "model": b.model}
        try:
            row |= probe_backbone(ds, image_size, b, device) | {"error": ""}
        except DataChangedError:  # not this backbone's fault: the study's data is gone
            raise
        except (OSError, ValueError, RuntimeError) as e:
            row["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"[:400]
        rows.append(row | {"wall_s": time.perf_counter() - t0})
    return rows


def run(
    study_dir: str,
    ds: PreparedDataset,
    settings,
    resources: dict[str, float],
    found: tuple[Backbone, ...],
) -> pd.DataFrame | None:
    """Probe `found` (from `plan`) and add the rows to confirm.parquet; None when there is
    nothing to probe. Ray must be running (on a cluster or a GPU the job is a Ray task)."""
    if not found:
        return None
    ds.check_unchanged()  # the splits the study was selected on, or no probe
    here = evaluates_here(resources)
    names = ", ".join(dict.fromkeys(b.model for b in found))
    console.phase(
        f"linear probe: logistic regression on frozen {names} features at "
        f"{settings.image_size} px, C chosen on val, scored on test "
        f"({'in this process' if here else 'as a Ray task'})"
    )
    args = (ds, settings.image_size, found)
    try:
        rows = run_evaluation(args, resources, here, fn=probe_job)
    except ray.exceptions.RayError as e:  # a lost node: say so in the rows, keep the study
        if isinstance(e, DataChangedError):  # Ray's error is also the task's own: the study's
            raise
        why = (str(e).strip().splitlines() or [type(e).__name__])[-1][:400]
        rows = [{"kind": confirmed.PROBE, "model": b.model, "error": why} for b in found]
    return confirmed.write(study_dir, rows, (confirmed.PROBE,))
