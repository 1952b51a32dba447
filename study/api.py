"""The notebook API: a finished (or running, or killed) study's tables as pandas DataFrames.

    import study
    s = study.load("studies/demo-20260101-120000")
    s.trials.sort_values("val_acc_max", ascending=False).head()
    model = study.load_best_model(s.dir).model

Reads only Parquet and JSON (pandas, pyarrow): no Ray, and torch only for `load_best_model`.
The columns are documented in docs/results.md (`study.results.schema`). A file that is damaged
(a truncated table, an epoch log with bytes that are not text, a corrupt best.pt) is a
`study.results.errors.StudyFileError` (a ValueError) naming it and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from study import storage
from study.results.schema import (
    CONFIRM,
    EPOCH_PARTS,
    EPOCHS,
    GRADCAM,
    PREDICTIONS,
    STUDY_JSON,
    TRIALS,
)
from study.results.tables import read_json, read_table


@dataclass
class Study:
    """One study directory's tables; a table the study has not written (yet) is None."""

    dir: str
    meta: dict[str, Any] = field(repr=False)
    trials: pd.DataFrame | None = field(repr=False)
    epochs: pd.DataFrame | None = field(repr=False)
    predictions: pd.DataFrame | None = field(repr=False)
    gradcam: pd.DataFrame | None = field(repr=False)
    confirm: pd.DataFrame | None = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or storage.basename(self.dir))

    @property
    def classes(self) -> list[str]:
        return list((self.meta.get("dataset") or {}).get("classes") or [])

    def best_model(self, trial_id: str | None = None, device: str | None = None) -> BestModel:
        """`load_best_model` of this study."""
        return load_best_model(self.dir, trial_id, device)

    def __str__(self) -> str:
        n = 0 if self.trials is None else len(self.trials)
        # study.json's status (records before it have only `finished`)
        old = "finished" if self.meta.get("finished") else "running or interrupted"
        done = self.meta.get("status") or old
        return f"study {self.name} ({done}): {n} trials, {storage.redact(self.dir)}"


def load(study_dir: str | Path) -> Study:
    """The tables of `study_dir` (a path or s3:// / gs:// URI). Epochs include the rows a
    running or killed study still holds in its per-trial logs. A damaged file: StudyFileError."""
    d = storage.absolute(study_dir)
    found = [
        n for n in (STUDY_JSON, TRIALS, EPOCHS, EPOCH_PARTS) if storage.exists(storage.join(d, n))
    ]
    if not found:
        raise FileNotFoundError(
            f"{study_dir}: not a study directory (none of {STUDY_JSON}, {TRIALS}, {EPOCHS})"
        )
    meta_path = storage.join(d, STUDY_JSON)
    return Study(
        dir=d,
        meta=read_json(meta_path) if storage.is_file(meta_path) else {},
        trials=read_table(d, TRIALS),
        epochs=read_table(d, EPOCHS),
        predictions=read_table(d, PREDICTIONS),
        gradcam=read_table(d, GRADCAM),
        confirm=read_table(d, CONFIRM),
    )


@dataclass
class BestModel:
    """A trial's best-validation weights, ready for inference (eval mode)."""

    model: Any  # torch.nn.Module
    trial_id: str
    config: Any  # study.training.config.TrainConfig: model options, image_size, ...
    classes: list[str]  # class names in the order of the model's outputs


def load_best_model(
    study_dir: str | Path, trial_id: str | None = None, device: str | None = None
) -> BestModel:
    """The best-validation weights of `trial_id`, or of the study's best trial by its metric on
    validation (the ranking of the report and of the test evaluation) among those that left a
    checkpoint. `device`: "cpu", "cuda", ...; default: a GPU if there is one. Weights load only
    with torch's weights_only=True; a best.pt that is damaged, holds more than weights or does not
    fit the trial's model is a StudyFileError naming it."""
    import torch

    from study.evaluation.inference import load_best_model as load_weights
    from study.results.lookups import read_study, trials_with_checkpoints
    from study.training.steps import pick_device

    d = storage.absolute(study_dir)
    meta, trials, classes, _ = read_study(d)
    if trial_id is None:
        trial_id = trials_with_checkpoints(d, trials, meta.get("settings") or {}, 1)[0][0]
    elif trial_id not in set(trials["trial_id"]):
        raise ValueError(f"{study_dir}: no trial {trial_id!r} in {TRIALS}")
    dev = torch.device(device) if device else pick_device()
    model, cfg = load_weights(d, trial_id, len(classes), dev)
    return BestModel(model, trial_id, cfg, list(classes))
