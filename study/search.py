"""Our two extensions of Ray Tune's classes, so that studies stay trustworthy.

- `StudySearch(OptunaSearch)`: the config is exactly what the space returns (+ a per-trial seed);
  Optuna hears every epoch (`trial.report(value, epoch)`) and the truth about how a trial ended:
  stopped by ASHA -> PRUNED, diverged/errored -> FAIL, finished -> COMPLETE with the value of the
  weights it keeps (its best epoch). Stock OptunaSearch tells COMPLETE with the truncated last
  value for ASHA-stopped trials, so TPE learns low-budget scores as if they were final.
- `StudyASHA(ASHAScheduler)`: persists its rung records to the study directory after every
  decision and reloads them after `Tuner.restore` (which rebuilds the scheduler empty, ray#30838),
  so early-stopping decisions after a resume are those of an uninterrupted run.
- `PerturbKnobs`: PBT's explore step for the knobs it may change mid-trial (study.tune.PBT_KNOBS).
- `Population(BasicVariantGenerator)`: PBT's trials, one per config drawn up front (Ray refuses a
  searcher with PBT, and its own points_to_evaluate need every key in a param_space, which a
  define-by-run space has not: a config's empty lists and absent conditional keys would be lost).
"""

from __future__ import annotations

import copy
import itertools
import logging
import random
from collections.abc import Callable
from typing import Any

import pandas as pd
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.experiment import _convert_to_experiment_list
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.basic_variant import _TrialIterator
from ray.tune.search.optuna import OptunaSearch

from study.preflight import RUN_CONSTANTS
from study.results import read_parquet, trial_status, write_parquet

logger = logging.getLogger(__name__)


def trial_config(
    func: Callable[[Any], dict], ot_trial: Any, constants: dict[str, Any], study_seed: int
) -> dict:
    """A trial's config: what the space returns for an Optuna trial, with the constants, its seed
    and the raw suggest_* values."""
    config = func(ot_trial)
    if not isinstance(config, dict):
        raise TypeError(f"space(trial) must return a dict, got {type(config).__name__}")
    # The raw suggest_* values travel under "suggested": recorded, never read by training.
    # The seed comes from the study seed and Optuna's trial number: the same across resumes.
    # The study's settings win over the space (the pre-flight rejects a space that returns
    # one): the data, the scheduler and trials.parquet all use the study's value.
    run = {k: v for k, v in constants.items() if k in RUN_CONSTANTS}
    return {
        **constants,
        **config,
        **run,
        "seed": study_seed * 10_000 + ot_trial.number,
        "suggested": dict(ot_trial.params),
    }


class StudySearch(OptunaSearch):
    def __init__(self, *args: Any, constants: dict[str, Any], study_seed: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._constants = constants
        self._study_seed = study_seed

    def _suggest_from_define_by_run_func(self, func, ot_trial) -> dict:
        return trial_config(func, ot_trial, self._constants, self._study_seed)

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if config is not None:
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # step = our epoch, which survives restarts from an older checkpoint unlike Ray's counter
        if trial_id in self._completed_trials or self.metric not in result:
            return
        if trial_id not in self._ot_trials:  # suggested just before a driver crash, never saved
            logger.warning(
                "trial %s is unknown to the restored Optuna study; its results are "
                "kept in the Parquet tables but not told to the sampler",
                trial_id,
            )
            return
        try:
            self._ot_trials[trial_id].report(
                float(result[self.metric]), int(result.get("epoch", 0))
            )
        except UpdateFinishedTrialError:  # told before a driver crash that Ray's state missed
            self._completed_trials.add(trial_id)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        try:
            self._tell(trial_id, result, error)
        except UpdateFinishedTrialError:  # told before a driver crash that Ray's state missed
            pass
        self._completed_trials.add(trial_id)

    def _tell(self, trial_id: str, result: dict | None, error: bool) -> None:
        ot_trial = self._ot_trials[trial_id]
        # Tune hands the last result only to on_trial_complete when it also ends the trial
        if result and self.metric in result and "epoch" in result:
            epoch = int(result["epoch"])
            if epoch not in ot_trial._cached_frozen_trial.intermediate_values:
                ot_trial.report(float(result[self.metric]), epoch)
        # the same reading of how a trial ended as trials.parquet's status; an ASHA stop is a
        # low-budget score, not a final one: PRUNED
        status, why = trial_status(result, error, (result or {}).get("error", ""))
        ot_trial.set_user_attr("end_reason", why or "no result")
        if status == "finished":
            self._ot_study.tell(ot_trial, float(result.get("best_value", result[self.metric])))
        else:
            state = TrialState.PRUNED if status == "stopped" else TrialState.FAIL
            self._ot_study.tell(ot_trial, state=state)


class StockSearch(StudySearch):
    """Ray's stock completion semantics (a stopped trial is COMPLETE with its last, truncated
    value), with our config handling; only for measuring what PRUNED buys (benchmarks/)."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        OptunaSearch.on_trial_complete(self, trial_id, result, error)


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


class Population(BasicVariantGenerator):
    def __init__(self, configs: list[dict], max_concurrent: int = 0):
        super().__init__(max_concurrent=max_concurrent)
        self._configs = configs

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
