"""Finding a study's trials and their weights on disk, without torch: the ranking of the best
trials, their configs and newest checkpoints, and the study's own description.

Used by `study.evaluate` (its checks before any image is decoded), by `study.training.transfer`
(which trial a warm start takes its weights from), `study.evaluation.confirm` and
`study.load_best_model`. A file found damaged or missing is a `StudyFileError` naming it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from study import storage
from study.results.errors import StudyFileError
from study.results.schema import STUDY_JSON, TRIALS
from study.results.statistics import Baseline, at_chance_trials, ranked
from study.results.tables import read_json, read_table

# final_model/ (written by study.evaluation.confirm for --refit): the refit model's state dict and
# final.json, the config it trained with, its classes and what it trained on
FINAL_DIR, FINAL_WEIGHTS, FINAL_JSON = "final_model", "model.pt", "final.json"


def final_model(study_dir: str) -> tuple[dict[str, Any], str] | None:
    """(final.json, weights path) of a study's refit model, or None if it has none. The weights
    are written first: weights without final.json are a refit that did not finish (none), and
    final.json without its weights a damaged final_model/ (a StudyFileError)."""
    meta_path = storage.join(study_dir, FINAL_DIR, FINAL_JSON)
    weights = storage.join(study_dir, FINAL_DIR, FINAL_WEIGHTS)
    if not storage.is_file(meta_path):
        return None
    if not storage.is_file(weights):
        raise StudyFileError(weights, f"missing, though {FINAL_JSON} beside it is there")
    meta = read_json(meta_path)
    if not isinstance(meta.get("config"), dict):
        raise StudyFileError(meta_path, "no 'config' (the config the refit model trained with)")
    return meta, weights


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


def select_top(
    trials: pd.DataFrame, k: int, settings: dict[str, Any], chance: Baseline | None = None
) -> list[str]:
    """Best K finished or ASHA-stopped trials by the study metric on validation (the ranking the
    report uses); running, diverged and errored trials are never candidates. Given `chance`,
    trials whose best validation accuracy does not beat guessing (study.results.statistics) are left
    out
    while any trial that beat it remains."""
    done = trials[trials["status"].isin(["finished", "stopped"])]
    if chance is not None:
        learned = done[~at_chance_trials(done, chance)]
        done = learned if len(learned) else done
    return ranked(done, settings)["trial_id"].head(k).tolist()


def read_study(study_dir: str) -> tuple[dict[str, Any], pd.DataFrame, list[str], int]:
    """study.json, trials.parquet, the study's classes and image size; a named error if unusable."""
    path = storage.join(study_dir, STUDY_JSON)
    if not storage.is_file(path):
        raise ValueError(
            f"{path}: no such file (expected a study directory of python -m study.run)"
        )
    meta = read_json(path)  # a StudyFileError naming it if it is not JSON
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
