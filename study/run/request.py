"""The state that crosses from the command line to the driver, typed and frozen: `Request` is
what the user asked (the parsed options, never mutated: a resume's recorded values make a new
one), `PreparedStudy` what the checks before Ray made of it (the space, settings, the data set
opened once, the study folder)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.evaluation.confirm_options import Plan

if TYPE_CHECKING:
    from study.data.store import PreparedDataset
    from study.evaluation.probe import Backbone
    from study.results.lock import DriverLock
    from study.spaces.loader import Space, SpaceFunction
    from study.spaces.settings import SpaceSettings


@dataclass(frozen=True)
class Request:
    space: str | None
    storage: str
    name: str | None
    data_dir: str | None
    seed: int | None
    num_samples: int | None
    max_epochs: int | None
    max_concurrent: int | None
    cpus_per_trial: float
    gpus_per_trial: float | None
    address: str | None
    optuna_storage: str | None
    smoke_test: bool
    resume: bool
    reports: str
    no_report: bool
    set: tuple[str, ...]
    plan: Plan
    init_from: str | None
    argv: tuple[str, ...]  # recorded in study.json (credentials redacted before that)
    list: bool = False
    quiet: bool = False
    verbose: bool = False
    probe: bool | None = None  # --probe / --no-probe; None: on where the space is pretrained
    callback: tuple[str, ...] = ()  # experiment trackers (study.tuning.trackers)

    @classmethod
    def from_args(cls, a: argparse.Namespace, argv: list[str]) -> Request:
        plan = Plan(a.confirm_seeds, a.confirm_folds, a.refit, a.ensemble, a.tta)
        return cls(
            space=a.space,
            storage=a.storage,
            name=a.name,
            data_dir=a.data_dir,
            seed=a.seed,
            num_samples=a.num_samples,
            max_epochs=a.max_epochs,
            max_concurrent=a.max_concurrent,
            cpus_per_trial=a.cpus_per_trial,
            gpus_per_trial=a.gpus_per_trial,
            address=a.address,
            optuna_storage=a.optuna_storage,
            smoke_test=a.smoke_test,
            resume=a.resume,
            reports=a.reports,
            no_report=a.no_report,
            set=tuple(a.set),
            plan=plan,
            init_from=a.init_from,
            argv=tuple(argv),
            list=a.list,
            quiet=a.quiet,
            verbose=a.verbose,
            probe=a.probe,
            callback=tuple(a.callback),
        )


@dataclass(frozen=True)
class PreparedStudy:
    request: Request
    name: str
    storage: str  # absolute: the same folder whatever the driver's working directory
    study_dir: str
    space: Space
    space_fn: SpaceFunction  # the space with its smoke overrides, as the trials call it
    settings: SpaceSettings
    constants: dict[str, Any]  # what every trial's config carries besides the space's values
    dataset: PreparedDataset  # opened once, here; handed to every stage after
    data_dir: str
    seed: int
    argv: tuple[str, ...]  # the command as study.json records it (no database password)
    space_sha256: str | None = None  # of the space's file as checked here (study.json records it)
    resources: dict[str, float] = field(default_factory=dict)  # set once Ray has started
    lock: DriverLock | None = None  # this driver's hold on the study, released by run_study
    probes: tuple[Backbone, ...] = ()  # the pretrained backbones the linear probe scores

    @property
    def reports_dir(self) -> str | None:
        return None if self.request.no_report else str(Path(self.request.reports) / self.name)

    @property
    def rank(self) -> dict[str, str]:
        return {"metric": self.settings.metric, "mode": self.settings.mode}
