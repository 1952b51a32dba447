"""The early stoppers, one registry: name -> a builder of Ray Tune's scheduler, plus our ASHA
whose rungs survive a driver kill and PBT's perturbed knobs.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Callable
from typing import Any

import optuna
import pandas as pd
from ray import tune
from ray.tune.experiment import _convert_to_experiment_list
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.basic_variant import _TrialIterator

from study.results.tables import read_parquet, write_parquet
from study.spaces.settings import SCHEDULER_NAMES, SpaceSettings
from study.tuning.ray_state import WholeSaves
from study.tuning.searcher import make_sampler, trial_config

# Knobs PBT may perturb: those a trial takes from its new config when it restarts from another
# trial's checkpoint. The learning rate is re-applied every epoch from the config (Training.
# base_lrs, set_epoch_lr), whereas weight decay and momentum come back from the optimiser's
# saved state and the architecture from the weights: perturbing those would change nothing.
PBT_KNOBS = ("lr",)


# schedulers whose state survives a driver kill: ASHA's rungs are saved to asha_rungs.parquet
# (StudyASHA), FIFO has none; Tuner.restore rebuilds any other as it was constructed (ray#30838)
RESUMABLE = ("asha", "fifo")


def pbt_knobs(settings: SpaceSettings) -> list[str]:
    """The PBT_KNOBS the space leaves nuisance (its roles; unlisted names are nuisance)."""
    knobs = [k for k in PBT_KNOBS if settings.roles.get(k, "nuisance") == "nuisance"]
    if not knobs:
        raise ValueError(
            f"SpaceSettings.roles={settings.roles}: scheduler 'pbt' perturbs only nuisance "
            f"knobs it can change mid-trial ({', '.join(PBT_KNOBS)}), and the roles leave none"
        )
    return knobs


def check_resumable(scheduler: str, study_dir: str) -> None:
    """--resume: before Ray starts, refuse a scheduler whose decisions would restart empty (a study
    whose tuner never existed starts afresh: nothing to resume)."""
    if scheduler not in RESUMABLE and tune.Tuner.can_restore(study_dir):
        raise ValueError(
            f"--resume: cannot resume rung state for {SCHEDULER_NAMES.get(scheduler, scheduler)} "
            f"(scheduler {scheduler!r}: Ray rebuilds it empty, so its decisions after the "
            f"resume would not be those of an uninterrupted run); schedulers that resume: "
            f"{', '.join(RESUMABLE)}. The finished trials stay in trials.parquet"
        )


def _asha(settings: SpaceSettings, common: dict, state_path: str, seed: int) -> TrialScheduler:
    return StudyASHA(
        **common,
        max_t=settings.max_epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
        state_path=state_path,
    )


def _hyperband(settings: SpaceSettings, common: dict, state_path: str, seed: int) -> TrialScheduler:
    # synchronous: a rung's decision waits for all of its bracket
    return HyperBandScheduler(
        **common, max_t=settings.max_epochs, reduction_factor=settings.reduction_factor
    )


def _median(settings: SpaceSettings, common: dict, state_path: str, seed: int) -> TrialScheduler:
    # stops a trial whose best so far is below the median of the others' running means at the
    # same epoch, from grace_period on, once 3 others have reached it (Ray's default)
    return MedianStoppingRule(**common, grace_period=settings.grace_period)


def _pbt(settings: SpaceSettings, common: dict, state_path: str, seed: int) -> TrialScheduler:
    # trials.parquet keeps a trial's first config; epochs.parquet's lr, the rate of each epoch
    return PopulationBasedTraining(
        **common,
        perturbation_interval=settings.grace_period,
        # the population's draw is the space's; PBT only perturbs (no resampling)
        custom_explore_fn=PerturbKnobs(pbt_knobs(settings), seed),
        synch=False,
    )


def _fifo(settings: SpaceSettings, common: dict, state_path: str, seed: int) -> TrialScheduler:
    return FIFOScheduler()


# The registry, one entry per early stopper (as Ray's own SCHEDULER_IMPORT): its keys are the
# names spaces/settings.py accepts and the report names (SCHEDULER_NAMES, which must not import
# Ray); tests/tuning/test_scheduler.py checks that the two agree.
BUILDERS: dict[str, Callable[[SpaceSettings, dict, str, int], TrialScheduler]] = {
    "asha": _asha,
    "hyperband": _hyperband,
    "median": _median,
    "pbt": _pbt,
    "fifo": _fifo,
}


def make_scheduler(settings: SpaceSettings, state_path: str, seed: int = 0) -> TrialScheduler:
    """The one place that builds a study's early stopper from its settings (time unit: epochs;
    metric and mode: the study's). `state_path`: where ASHA keeps its rung records."""
    build = BUILDERS.get(settings.scheduler)
    if build is None:
        raise ValueError(
            f"unknown scheduler {settings.scheduler!r}; expected one of {', '.join(BUILDERS)}"
        )
    common = {"time_attr": "epoch", "metric": settings.metric, "mode": settings.mode}
    return build(settings, common, state_path, seed)


def pbt_population(
    space_fn: Callable[[optuna.Trial], dict],
    settings: SpaceSettings,
    constants: dict[str, Any],
    seed: int,
    grid: dict[str, list] | None,
) -> list[dict]:
    """PBT's trials, drawn up front by the space's sampler in an in-memory Optuna study (Ray
    accepts no searcher with PBT), each config as StudySearch would have made it."""
    knobs = pbt_knobs(settings)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory"
    try:
        study = optuna.create_study(sampler=make_sampler(settings.sampler, seed, grid))
    finally:
        optuna.logging.set_verbosity(verbosity)
    for point in settings.starting_points:
        study.enqueue_trial(point)
    configs = []
    for _ in range(settings.num_samples):
        trial = study.ask()
        configs.append(trial_config(space_fn, trial, constants, seed))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # a grid sampler moves on
    if not any(k in c for c in configs for k in knobs):
        raise ValueError(
            f"scheduler 'pbt': the space's configs set none of {', '.join(knobs)}, the knobs "
            "PBT perturbs"
        )
    return configs


class StudyASHA(ASHAScheduler):
    def __init__(self, *args: Any, state_path: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._state_path = state_path
        self._loaded = False
        self._saved_as: tuple[int, int, int] | None = None
        # trials this scheduler stopped: if a driver crash kept Ray from recording the stop, the
        # resumed trial is stopped again at its first result instead of training on
        self._stopped: set[str] = set()

    def _load_once(self) -> None:
        """Runs at the first event after construction or unpickling: a fresh study finds no file,
        a restored one gets back the rungs it had when the driver stopped."""
        if self._loaded:
            return
        self._loaded = True
        self._saved_as = None  # a restored scheduler writes its file at its first event
        table = read_parquet(self._state_path)
        if table is None:
            return
        for row in table.itertuples(index=False):
            rungs = dict(self._brackets[row.bracket]._rungs)
            rungs[row.milestone][row.trial_id] = row.value
            if getattr(row, "stopped", False):
                self._stopped.add(row.trial_id)
        self._num_stopped = int(table.attrs.get("num_stopped", 0))

    def _save(self) -> None:
        # rungs only gain records (at milestones) and stops: rewrite the file only when they did
        changed = (sum(len(r) for b in self._brackets for _, r in b._rungs), len(self._stopped),
                   self._num_stopped)  # fmt: skip
        if changed == self._saved_as:
            return
        self._saved_as = changed
        # Parquet, not JSON: Tuner.restore copies the experiment's *.json/*.pkl files into its
        # staging dir and syncs them back up, which would overwrite a newer JSON with the old one
        rows = [
            {
                "bracket": b,
                "milestone": int(m),
                "trial_id": t,
                "value": float(v),
                "stopped": t in self._stopped,
            }
            for b, bracket in enumerate(self._brackets)
            for m, rec in bracket._rungs
            for t, v in rec.items()
        ]
        columns = ["bracket", "milestone", "trial_id", "value", "stopped"]
        table = pd.DataFrame(rows, columns=columns)
        table.attrs["num_stopped"] = self._num_stopped
        write_parquet(table, self._state_path)

    def on_trial_add(self, tune_controller, trial) -> None:
        self._load_once()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._load_once()
        if trial.trial_id in self._stopped:
            return TrialScheduler.STOP
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t:
            self._stopped.add(trial.trial_id)
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._load_once()
        super().on_trial_complete(tune_controller, trial, result)
        self._save()


class PerturbKnobs:
    """PBT's explore step: each knob of the cloned config times 0.8 or 1.2 (Ray's factors), from
    a generator seeded by the study seed. A class, not a closure: the tuner is pickled."""

    FACTORS = (0.8, 1.2)

    def __init__(self, knobs: list[str], seed: int):
        self.knobs = list(knobs)
        self._rng = random.Random(seed)

    def __call__(self, config: dict) -> dict:
        for k in self.knobs:
            if k in config:
                config[k] = float(config[k]) * self._rng.choice(self.FACTORS)
        return config


class Population(WholeSaves, BasicVariantGenerator):
    def __init__(self, configs: list[dict], study_dir: str, max_concurrent: int = 0):
        super().__init__(max_concurrent=max_concurrent)
        self._configs = configs
        self.study_dir = study_dir

    def set_state(self, state: dict) -> None:
        # Ray's state holds the folder it was saved in: a copied study zips into its own
        study_dir = self.study_dir
        super().set_state(state)
        self.study_dir = study_dir

    def add_configurations(self, experiments) -> None:
        for experiment in _convert_to_experiment_list(experiments):
            # Ray's own trial maker (ids, tags, the experiment's resources and storage)
            n = len(self._configs)
            maker = _TrialIterator(self._uuid_prefix, n, experiment.spec, start=self._total_samples)
            self._total_samples += n
            trials = (
                maker.create_trial({}, {**experiment.spec, "config": copy.deepcopy(c)})
                for c in self._configs
            )
            self._trial_generator = itertools.chain(self._trial_generator, trials)
