"""study/tuning/ (searcher.py, schedulers.py, tuner.py's restore) extends Ray Tune's OptunaSearch,
ASHAScheduler and Tuner through private attributes; pyproject.toml caps ray[tune] and optuna at
the minor versions checked here. A new release that renames any of them fails this test (then
check those modules and raise the cap), not a study."""

from __future__ import annotations

import inspect
import re
import sys
import tomllib
from importlib import metadata

import optuna
import pytest
from conftest import REPO
from ray import tune
from ray._common.usage import usage_lib
from ray.air._internal import usage as air_usage
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from ray.tune.tune import run as tune_run

from study.tuning import tuner
from study.tuning.callbacks import ConsoleCallback
from study.tuning.tuner import _no_callback_census, skip_callback_census_without_usage_stats

# what study/search.py reads or overrides, by owner
OPTUNA_SEARCH = (
    "_ot_trials", "_completed_trials", "_ot_study", "metric", "_storage", "_study_name", "_sampler"
)  # fmt: skip
# what tuner.restore_tuner replaces in a restored Tuner (the paths Ray pickled)
TUNER = ("_local_tuner",)
TUNER_INTERNAL = ("_tune_config", "_run_config")
ASHA = ("_brackets", "_num_stopped", "_time_attr", "_max_t")


def _space(trial: optuna.Trial) -> dict:
    return {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}


def test_the_private_attributes_search_py_uses_still_exist(tmp_path) -> None:
    searcher = OptunaSearch(space=_space, metric="val_acc", mode="max")
    assert searcher.suggest("t1") is not None
    for name in OPTUNA_SEARCH:
        assert hasattr(searcher, name), f"OptunaSearch.{name}"
    # StudySearch overrides this hook: OptunaSearch must still call it for define-by-run spaces
    assert "_suggest_from_define_by_run_func" in inspect.getsource(OptunaSearch)
    ot_trial = searcher._ot_trials["t1"]
    assert isinstance(ot_trial, optuna.Trial)
    assert isinstance(ot_trial._cached_frozen_trial.intermediate_values, dict)
    asha = ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    for name in ASHA:
        assert hasattr(asha, name), f"ASHAScheduler.{name}"
    milestone, records = asha._brackets[0]._rungs[0]  # (milestone, {trial_id: value})
    assert isinstance(milestone, int | float) and isinstance(records, dict)
    tuner = tune.Tuner(  # a Tuner makes its run's folder: in tmp_path, not the user's ~/ray_results
        lambda config: None,
        tune_config=tune.TuneConfig(search_alg=searcher),
        run_config=tune.RunConfig(storage_path=str(tmp_path)),
    )
    for name in TUNER:
        assert hasattr(tuner, name), f"Tuner.{name}"
    for name in TUNER_INTERNAL:
        assert hasattr(tuner._local_tuner, name), f"TunerInternal.{name}"
    assert tuner._local_tuner._tune_config.search_alg is searcher


def _cap(requirement: str) -> tuple[int, int]:
    return tuple(int(x) for x in re.search(r"<(\d+)\.(\d+)", requirement).groups())


def test_the_installed_versions_are_below_the_caps() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for pkg in ("ray", "optuna"):
        req = next(d for d in deps if re.match(rf"{pkg}\b", d))
        installed = tuple(int(x) for x in metadata.version(pkg).split(".")[:2])
        assert installed < _cap(req), f"{pkg} {metadata.version(pkg)} vs {req}"


@pytest.mark.parametrize("stats_on", [False, True])
def test_tune_counts_callbacks_without_importing_mlflow_when_usage_stats_are_off(
    stats_on: bool, monkeypatch
) -> None:
    """Tune's run() still calls air_usage.tag_callbacks, which imports Ray's MLflow integration
    (mlflow: about 1 s of each study's driver) unless usage statistics are off and
    study.tuning.tuner replaced it. The integration is made unimportable here: importing it
    raises, which only the count with statistics on does."""
    assert "air_usage.tag_callbacks(callbacks)" in inspect.getsource(tune_run)
    # start from the other setting's census (restored after): an earlier study in this process
    # may have left either, and the skip below must set the one for this setting
    other = _no_callback_census if stats_on else tuner._RAY_CALLBACK_CENSUS
    monkeypatch.setattr(air_usage, "tag_callbacks", other)
    monkeypatch.setattr(usage_lib, "usage_stats_enabled", lambda: stats_on)
    monkeypatch.setitem(sys.modules, "ray.air.integrations.mlflow", None)
    skip_callback_census_without_usage_stats()
    callbacks = [ConsoleCallback(1, "val_acc", "max")]
    if stats_on:
        with pytest.raises(ImportError):
            air_usage.tag_callbacks(callbacks)
    else:
        assert air_usage.tag_callbacks(callbacks) is False
