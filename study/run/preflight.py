"""`python -m study.run`'s checks of its command line, all made before Ray starts.

Each failure is a UsageError naming the option (or file) and what was expected; the runner prints
it as one line and exits 2. Nothing here creates anything but the --storage folder (`make_storage`,
the last check). A damaged file of a study to resume is a StudyFileError naming it (also a
ValueError, printed the same way).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from study import storage as st
from study.models import create_model
from study.report.load import check_out_dir
from study.results.schema import ASHA_RUNGS, EPOCHS, STUDY_JSON, TRIALS
from study.results.study_json import RecordError, check_record
from study.results.tables import read_json, read_table
from study.run.request import Request
from study.spaces.constants import RUN_CONSTANTS, THREADS
from study.spaces.cover import cover_space
from study.spaces.loader import SpaceFunction, one_line
from study.spaces.settings import SpaceSettings
from study.training.config import TrainConfig
from study.tuning.optuna_storage import check_optuna_db


class UsageError(ValueError):
    pass


def check_args(a: Request) -> None:
    """Reject impossible values with the option's name, before anything expensive."""
    if not a.space and not a.resume:
        raise UsageError("--space NAME is required (see --list)")
    if a.name is not None:
        st.check_name(a.name, "--name")
    for opt in ("num_samples", "max_epochs", "max_concurrent"):
        v = getattr(a, opt)
        if v is not None and v < 1:
            raise UsageError(f"--{opt.replace('_', '-')} {v}: expected an integer >= 1")
    if a.cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial {a.cpus_per_trial}: expected a number > 0")
    if a.gpus_per_trial is not None and a.gpus_per_trial < 0:
        raise UsageError(f"--gpus-per-trial {a.gpus_per_trial}: expected a number >= 0")
    if a.gpus_per_trial and 1 < a.gpus_per_trial != int(a.gpus_per_trial):
        raise UsageError(f"--gpus-per-trial {a.gpus_per_trial}: above 1 it must be a whole number")
    if a.resume and not a.name:
        raise UsageError("--resume needs --name STUDY (the study to continue)")
    if a.address is None:  # local: we know the machine
        ncpu = os.cpu_count() or 1
        if a.cpus_per_trial > ncpu:
            raise UsageError(f"--cpus-per-trial {a.cpus_per_trial}: this machine has {ncpu} CPUs")
        if a.gpus_per_trial:
            import torch

            if torch.cuda.device_count() < a.gpus_per_trial or not torch.cuda.is_available():
                raise UsageError(
                    f"--gpus-per-trial {a.gpus_per_trial}: this machine has "
                    f"{torch.cuda.device_count()} usable GPU(s)"
                )
    for opt in ("storage", "reports"):
        if Path(getattr(a, opt)).is_file():  # (a URI is never a local file)
            raise UsageError(f"--{opt} {getattr(a, opt)}: is a file; expected a folder")


def study_record(storage: str, name: str, resume: bool) -> dict[str, Any] | None:
    """The recorded study.json of the study to resume; None for a new study, whose folder must
    not hold a study already or anything else (an empty one, which holds nothing to lose, is
    used: a failed start of an older version left those behind)."""
    study_dir = st.join(storage, name)
    where = st.join(study_dir, STUDY_JSON)
    if resume:
        if not st.is_file(where):
            raise UsageError(f"--resume: no study at {study_dir} (no {STUDY_JSON})")
        meta = read_json(where)  # not JSON: a StudyFileError naming it
        try:  # the report's check too: a record it could not draw is not resumed
            return check_record(meta, where)
        except RecordError as e:
            raise UsageError(str(e)) from e
    if st.is_file(where):
        raise UsageError(
            f"study {study_dir} already exists: continue it with --resume "
            f"--name {name}, or choose another --name"
        )
    if not st.is_empty(study_dir):
        raise UsageError(
            f"--name {name}: {study_dir} exists and is not a study (no {STUDY_JSON}); "
            "choose another --name"
        )
    return None


def recorded(a: Request, meta: dict[str, Any], where: str) -> tuple[Request, SpaceSettings]:
    """--resume: the study continues as its study.json records it. A flag left out takes the
    recorded value; a flag given with another value is an error naming both (resuming a smoke
    test without --smoke-test once trained at 48 px while every record said 32 px).
    --cpus-per-trial, --gpus-per-trial and --address say where this run executes, not what the
    study is, and may change. Returns the request with the recorded values filled in."""
    s = meta.get("settings") or {}
    taken: dict[str, Any] = {}
    for attr, value in (
        ("num_samples", s.get("num_samples")),
        ("max_epochs", s.get("max_epochs")),
        ("max_concurrent", s.get("max_concurrent")),
        ("seed", meta.get("seed")),
    ):
        flag, given = f"--{attr.replace('_', '-')}", getattr(a, attr)
        if given is not None and given != value:
            raise UsageError(f"{flag} {given} contradicts {where}: the study has {flag} {value}")
        taken[attr] = value
    if a.smoke_test and not s.get("smoke_test"):
        raise UsageError(f"--smoke-test contradicts {where}: the study is not a smoke test")
    taken["smoke_test"] = bool(s.get("smoke_test"))
    data_dir = str((meta.get("dataset") or {}).get("data_dir"))
    if a.data_dir is not None and st.redact(st.absolute(a.data_dir)) != data_dir:
        raise UsageError(
            f"--data-dir {a.data_dir} contradicts {where}: the study has --data-dir {data_dir}"
        )
    if a.data_dir is None and "***" in data_dir:
        raise UsageError(f"{where} records --data-dir {data_dir} without its credentials: give it")
    taken["data_dir"] = a.data_dir or data_dir
    # Ray's saved searcher keeps the Optuna storage the study started with: another is an error
    had = meta.get("optuna_storage")
    if a.optuna_storage is not None and had and st.redact(a.optuna_storage) != had:
        raise UsageError(
            f"--optuna-storage {st.redact(a.optuna_storage)} contradicts {where}: the study has "
            f"--optuna-storage {had}"
        )
    ref = str(meta.get("space_ref") or meta.get("space"))
    if a.space is not None:
        given = SpaceFunction(a.space).ref
        # studies recorded before space_ref have only the space's name (a file's stem)
        if given != ref and Path(given).stem != meta.get("space"):
            raise UsageError(f"--space {a.space} contradicts {where}: the study has --space {ref}")
    taken["space"] = a.space or ref
    known = {f.name for f in fields(SpaceSettings)}
    values = {k: v for k, v in s.items() if k in known}
    values["starting_points"] = tuple(values.get("starting_points") or ())
    try:
        settings = SpaceSettings(**values)  # validated again: a hand-edited record fails here
    except TypeError as e:
        raise UsageError(f"{where}: settings: {e}") from e
    return replace(a, **taken), settings


def check_no_override(cfg: dict[str, Any], source: str, params: dict[str, Any]) -> None:
    """A config a space returned holds none of the settings the run decides (`trial_constants`):
    one line naming the space's file and the key, before Ray starts."""
    for key in RUN_CONSTANTS:
        if key in cfg:
            where = "--cpus-per-trial" if key == THREADS else f"SETTINGS (or --set {key}=...)"
            raise UsageError(
                f"space {source}: space(trial) returns {key!r} (with params {params}), a setting "
                f"of the whole study that the data, ASHA and trials.parquet use: set it in "
                f"{where}, not in the config"
            )


def check_space_builds(fn, settings, constants: dict[str, Any], num_classes: int) -> None:
    """Build the config and model of every covering trial (each categorical choice of the space
    at least once, see `cover_space`), so a bad value on any branch fails now, in one line, not
    in every trial that samples it. Models are built on the meta device (no memory, no init) and
    without pretrained=True weights (timm would download them): the trials load those."""

    source = fn.space.module.__file__
    try:
        cover = cover_space(fn, settings)
    except ValueError as e:
        raise ValueError(f"space {source}: {e}") from e
    for params, cfg in zip(cover.params, cover.configs, strict=True):
        check_no_override(cfg, source, params)  # before torch is even imported
    import torch

    for params, cfg in zip(cover.params, cover.configs, strict=True):
        try:
            tc = TrainConfig.from_config({**constants, **cfg, "seed": 0})
            options = dict(tc.model_options)
            if options.get("pretrained") is True:
                options["pretrained"] = False
            with torch.device("meta"):
                create_model(tc.model, num_classes, **options)
        except Exception as e:  # whatever the config or model rejects: one line, exit code 2
            raise ValueError(f"space {source}: with params {params}: {one_line(e)}") from e


def check_reports(a: Request, name: str) -> None:
    """The dashboard goes to --reports/NAME: never over a page or folder not of the report's."""
    if a.no_report:
        return

    check_out_dir(Path(a.reports) / name, "--reports")


def check_study_files(study_dir: str, scheduler: str, optuna_storage: str | None) -> None:
    """--resume: the files the resumed driver reads back are readable, checked before Ray starts
    (it reads them inside Ray's callbacks and restored searcher, where a damaged one ends the run
    in a traceback naming no file): the tables, the epoch logs, ASHA's rungs and optuna.db."""
    for table in (TRIALS, EPOCHS, ASHA_RUNGS):  # EPOCHS: epochs.parquet and every epoch log
        read_table(study_dir, table)
    if scheduler != "pbt" and optuna_storage is None:  # PBT keeps no Optuna study
        check_optuna_db(study_dir)


def make_storage(storage: str, study_dir: str | None = None) -> None:
    """Create a local --storage folder and probe that it takes new folders: a path under /proc or
    on a read-only mount would otherwise fail only after Ray had started. A study to resume
    (`study_dir`, which exists) is probed too: its folder may be read-only when --storage is not.
    (A URI's bucket is checked by st.check_reachable.)"""
    if st.is_remote(storage):
        return
    try:
        Path(storage).mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(dir=storage, prefix=".study-probe-"))
    except OSError as e:
        raise UsageError(f"--storage {storage}: cannot create folders there ({e})") from e
    if study_dir is None or not Path(study_dir).is_dir():
        return
    try:
        os.rmdir(tempfile.mkdtemp(dir=study_dir, prefix=".study-probe-"))
    except OSError as e:
        raise UsageError(
            f"{study_dir}: cannot write there ({e.strerror or e}); the resumed study writes its "
            "tables there: make it writable"
        ) from e
