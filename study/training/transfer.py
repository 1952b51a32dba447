"""Weights that outlive a trial: a study's final model, and warm starts from another study.

`init_from: STUDY_DIR[:TRIAL_ID]` (a config key, or `study.run --init-from`) starts a trial's model
from another study's weights: its best trial by the study's ranking, the trial named, or `:final`
(the `--refit` model). The backbone is loaded strictly; the head too when the two studies have the
same classes in the same order and the same head, else it stays freshly initialised. `freeze` and
`backbone_lr_mult` then act on these weights as on ImageNet ones (the model is built, frozen, then
loaded; the optimiser is made afterwards).

`final_model/` (written by `study.evaluation.confirm` for `--refit`) holds `model.pt` (a state dict)
and `final.json` (the config it trained with, the classes, what it trained on); found by
`study.results.lookups.final_model`. A source file that is damaged or missing is a StudyFileError
naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from study import storage
from study.models.layers import state_mismatch
from study.models.registry import get_entry
from study.results.lookups import (
    FINAL_DIR,
    FINAL_JSON,
    FINAL_WEIGHTS,
    final_model,
    latest_checkpoint,
    trial_config,
    trials_with_checkpoints,
)
from study.results.schema import STUDY_JSON, TRIALS
from study.results.tables import read_json, read_table
from study.training.checkpoints import read_weights, state_dict
from study.training.config import TrainConfig

FINAL = "final"  # STUDY_DIR:final names the refit model


# model options a warm start never inherits: the source's ImageNet loading is overwritten anyway
# (and would download on a worker), freezing and LR multipliers belong to the new study
NOT_INHERITED = ("pretrained", "freeze", "backbone_lr_mult")


HEAD_PREFIX = "head."


@dataclass(frozen=True)
class Source:
    """Where warm-start weights come from, resolved and checked."""

    study_dir: str
    trial_id: str  # a trial id, or FINAL
    weights: str  # the state-dict file
    config: dict[str, Any]  # the config those weights trained with
    classes: list[str]


def parse(text: str) -> tuple[str, str | None]:
    """`STUDY_DIR[:TRIAL_ID]` -> (study dir, trial id or None). A URI's own colon
    (`s3://b/x`) is not a separator: a trial id never contains '/'."""
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and "/" not in tail:
        return head, tail
    return text, None


def _state(path: str) -> dict[str, torch.Tensor]:
    return state_dict(read_weights(path, "cpu"), path)


def write_final_model(study_dir: str, state: bytes, meta: dict[str, Any]) -> str:
    """Write `final_model/` (weights first: a reader that finds final.json finds the weights)."""
    storage.write_bytes(storage.join(study_dir, FINAL_DIR, FINAL_WEIGHTS), state)
    storage.write_text(
        storage.join(study_dir, FINAL_DIR, FINAL_JSON), json.dumps(meta, indent=2, default=str)
    )
    return storage.join(study_dir, FINAL_DIR)


def resolve(init_from: str) -> Source:
    """The weights `init_from` names; a one-line ValueError naming it when they are not there."""
    where = f"init_from {init_from!r}"
    study_dir, trial = parse(init_from)
    study_dir = storage.absolute(study_dir)
    meta_path = storage.join(study_dir, STUDY_JSON)
    if not storage.is_file(meta_path):
        raise ValueError(f"{where}: no study at {study_dir} (no {STUDY_JSON})")
    meta = read_json(meta_path)
    classes = list(meta.get("dataset", {}).get("classes") or [])
    if trial == FINAL:
        found = final_model(study_dir)
        if found is None:
            raise ValueError(f"{where}: {study_dir} has no {FINAL_DIR}/ (run it with --refit)")
        final, weights = found
        return Source(study_dir, FINAL, weights, dict(final["config"]), classes)
    if trial is None:
        trials = read_table(study_dir, TRIALS)
        if trials is None:
            raise ValueError(f"{where}: {study_dir} has no {TRIALS}")
        trial = trials_with_checkpoints(study_dir, trials, meta.get("settings", {}), 1)[0][0]
    ckpt = latest_checkpoint(storage.join(study_dir, trial))
    weights = storage.join(ckpt, "best.pt") if ckpt else ""
    if not ckpt or not storage.is_file(weights):
        raise ValueError(f"{where}: trial {trial} has no checkpoint with best.pt in {study_dir}")
    try:
        config = trial_config(study_dir, trial)
    except FileNotFoundError as e:
        raise ValueError(f"{where}: {e}") from None
    return Source(study_dir, trial, weights, config, classes)


def inherited_config(init_from: str) -> dict[str, Any]:
    """The source's architecture as config constants (`model` and its model options, not the
    transfer ones), so a space that sets only what it changes builds the source's network;
    whatever the space sets wins. Recorded with every trial like any config key."""
    src = resolve(init_from)
    cfg = TrainConfig.from_config(src.config)
    options = {k: v for k, v in cfg.model_options.items() if k not in NOT_INHERITED}
    if "pretrained" in {f.name for f in fields(get_entry(cfg.model).options)}:
        options["pretrained"] = False  # the source's weights replace ImageNet's anyway
    # pinned to the trial it resolved to: every trial starts from the same weights even if the
    # source study's ranking changes while this one runs
    pinned = f"{src.study_dir}:{src.trial_id}"
    return {"model": cfg.model, **options, "init_from": pinned}


def _without_counters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # BatchNorm's num_batches_tracked is absent from a frozen BN (timm's FrozenBatchNorm2d)
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def load_into(
    model: nn.Module, state: dict[str, torch.Tensor], same_classes: bool, what: str
) -> bool:
    """Load `state` into `model`: every backbone tensor must match by name and shape; the head is
    loaded only if the classes are the same and it matches too. Returns whether it was."""
    own = _without_counters(model.state_dict())
    state = _without_counters(state)
    head_own = {k for k in own if k.startswith(HEAD_PREFIX)}
    head_src = {k for k in state if k.startswith(HEAD_PREFIX)}
    head = (
        same_classes
        and head_own == head_src
        and all(state[k].shape == own[k].shape for k in head_own)
    )
    keep = lambda k: head or not k.startswith(HEAD_PREFIX)  # noqa: E731
    own = {k: v for k, v in own.items() if keep(k)}
    state = {k: v for k, v in state.items() if keep(k)}
    problems = state_mismatch(own, state, "source")
    if problems:
        raise ValueError(
            f"{what}: its weights do not fit this model ({problems}); the backbone must "
            "be the source's (same model and options)"
        )
    model.load_state_dict(state, strict=False)
    return head


def warm_start(model: nn.Module, init_from: str, classes: list[str]) -> str:
    """Load the weights `init_from` names into a freshly built `model`; returns a note."""
    src = resolve(init_from)
    device = next(model.parameters()).device
    state = {k: v.to(device) for k, v in _state(src.weights).items()}
    head = load_into(model, state, list(src.classes) == list(classes), f"init_from {init_from!r}")
    kept = "backbone and head" if head else "backbone (new head)"
    return f"warm start: {kept} from {src.study_dir} trial {src.trial_id}"
