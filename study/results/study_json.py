"""study.json's owner: the record a run writes (`new_record`, `resumed_record`) and the one check
of a record read back (`check_record`), used by --resume (study.run.preflight) and the report
(study.report.load), so the writer and its readers cannot disagree on a field's name or values.

Ray-free and torch-free: the report imports it with Ray blocked.
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from typing import Any

from study import storage as st
from study.spaces.settings import ROLES

# a hyperparameter's `kind`, as study.spaces.cover.describe records an Optuna distribution
KINDS = ("float", "int", "categorical")


# settings the report reads as ASHA's rungs: positive integers
RUNG_SETTINGS = ("max_epochs", "grace_period", "reduction_factor")


class RecordError(ValueError):
    """A study.json that its readers cannot use; the message names the file and the field."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_record(
    *,
    name: str,
    space: str,
    space_ref: str,
    settings: Any,
    seed: int,
    argv: list[str],
    dataset: Any,
    data_dir: str,
    run: dict[str, Any],
    hyperparameters: dict[str, dict],
    optuna_storage: str | None,
    set_values: dict[str, Any],
    code: dict[str, Any],
    space_sha256: str | None = None,
) -> dict[str, Any]:
    """What a run records before tuning starts. `settings`: the SpaceSettings after smoke, --set
    and flags; `dataset`: the opened prepared data set; `run`: how this run executes (resources,
    max_concurrent, smoke_test), kept beside the settings; `code`: git_commit and versions.
    URIs and the command are redacted: study.json never holds a credential."""
    return {
        "name": name,
        "space": space,
        "space_ref": space_ref,  # what --resume loads: a shipped name or the file's path
        # its file's bytes when the study began: --resume refuses another (study.run.preflight)
        "space_sha256": space_sha256,
        "description": settings.description,
        "seed": seed,
        "command": st.redact(shlex.join(["python", "-m", "study.run", *argv])),
        "started": now(),
        "finished": None,
        **code,
        "dataset": {
            "name": dataset.name,
            "version": dataset.version,
            "split_rule": dataset.manifest["split_rule"],
            "classes": dataset.classes,
            "counts": dataset.manifest["counts"],
            # per class and split: what guessing scores on an imbalanced val split (the report's
            # "at chance" verdict; study.results.statistics.Baseline.from_manifest)
            "class_counts": dataset.manifest.get("class_counts"),
            "data_dir": st.redact(data_dir),
        },
        "settings": {
            **settings.__dict__,
            "starting_points": list(settings.starting_points),
            **run,
        },
        "hyperparameters": hyperparameters,
        "optuna_storage": st.redact(optuna_storage) if optuna_storage else None,
        "set": set_values,  # the settings --set changed (already in settings above)
    }


def resumed_record(first: dict[str, Any], started: str) -> dict[str, Any]:
    """A resumed study keeps what its first run recorded, and notes when it was resumed."""
    return {**first, "resumed": [*first.get("resumed", []), started], "finished": None}


def check_record(meta: Any, where: str) -> dict[str, Any]:
    """`meta` if it is a study.json its readers can use; else RecordError naming the field."""
    if not isinstance(meta, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    hps = meta.get("hyperparameters") or {}
    if not isinstance(hps, dict):
        raise RecordError(f"{where}: hyperparameters must be an object of name -> spec")
    for name, spec in hps.items():
        field = f"{where}: hyperparameters.{name}"
        if not isinstance(spec, dict):
            raise RecordError(f"{field}: expected an object with role and kind")
        if spec.get("kind") not in KINDS:
            raise RecordError(f"{field}.kind: expected one of {KINDS}, got {spec.get('kind')!r}")
        if spec.get("role", "nuisance") not in ROLES:
            raise RecordError(f"{field}.role: expected one of {ROLES}, got {spec.get('role')!r}")
    digest = meta.get("space_sha256")  # absent from studies begun before it was recorded
    if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
        raise RecordError(f"{where}: space_sha256 must be 64 hex digits, got {digest!r}")
    settings = meta.get("settings") or {}
    if not isinstance(settings, dict):
        raise RecordError(f"{where}: settings must be an object")
    for key in RUNG_SETTINGS:
        value = settings.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise RecordError(f"{where}: settings.{key} must be a positive integer, got {value!r}")
    return meta
