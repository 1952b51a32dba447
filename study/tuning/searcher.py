"""Our two extensions of Ray Tune's classes, so that studies stay trustworthy.

- `StudySearch(OptunaSearch)`: the config is exactly what the space returns (+ a per-trial seed);
  Optuna hears every epoch (`trial.report(value, epoch)`) and the truth about how a trial ended:
  stopped by ASHA -> PRUNED, diverged/errored -> FAIL, finished -> COMPLETE with the value of the
  weights it keeps (its best epoch). Stock OptunaSearch tells COMPLETE with the truncated last
  value for ASHA-stopped trials, so TPE learns low-budget scores as if they were final.
- `StudyASHA(ASHAScheduler)`: persists its rung records to the study directory after every
  decision and reloads them after `Tuner.restore` (which rebuilds the scheduler empty, ray#30838),
  so early-stopping decisions after a resume are those of an uninterrupted run.
- `PerturbKnobs`: PBT's explore step for the knobs it may change mid-trial
(study.tuning.schedulers.PBT_KNOBS).
- `Population(BasicVariantGenerator)`: PBT's trials, one per config drawn up front (Ray refuses a
  searcher with PBT, and its own points_to_evaluate need every key in a param_space, which a
  define-by-run space has not: a config's empty lists and absent conditional keys would be lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from study.results.trials import trial_status
from study.spaces.constants import RUN_CONSTANTS

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

    def restore(self, checkpoint_path: str) -> None:
        """Ray's saved searcher holds the Optuna storage of the folder it was saved in: a copied
        or renamed study would write its trials into the original. Keep this searcher's storage
        (made for the folder being resumed) and re-bind the saved study and trials to it."""
        here = self._storage
        super().restore(checkpoint_path)
        if here is None or self._ot_study is None:
            return
        study = optuna.load_study(study_name=self._study_name, storage=here, sampler=self._sampler)
        self._storage, self._ot_study = here, study
        self._ot_trials = {
            tid: optuna.trial.Trial(study, t._trial_id) for tid, t in self._ot_trials.items()
        }

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


def make_sampler(
    name: str, seed: int, grid: dict[str, list] | None = None
) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "grid":
        if not grid:
            raise ValueError(
                "sampler 'grid' needs the space module to define GRID = {param: [values]}"
            )
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise ValueError(f"unknown sampler {name!r}")
