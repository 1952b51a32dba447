"""The scheduler seam: `study.tuning.schedulers.make_scheduler` builds every kind a space may choose
from its settings, bad names and misfitting options fail before Ray starts, ASHA's rung records
survive a save/load round trip, the report draws the rungs ASHA recorded, and one smoke study per
new kind
runs to the end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from conftest import STUDY_TEST_TIMEOUT_S, joined_ray
from ray.tune.schedulers import (
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from report_fixture import make_study

from study.report.curves import curves_section, rung_epochs
from study.report.load import load_study
from study.results.trials import trial_status
from study.run.overrides import apply_set, parse_set
from study.spaces.settings import SCHEDULERS, SpaceSettings, stopped_early
from study.tuning.ray_state import read_last_save
from study.tuning.schedulers import (
    BUILDERS,
    PerturbKnobs,
    Population,
    StudyASHA,
    check_resumable,
    make_scheduler,
    pbt_population,
)
from study.tuning.tuner import ASHA_STATE

KINDS = {
    "asha": StudyASHA,
    "hyperband": HyperBandScheduler,
    "median": MedianStoppingRule,
    "pbt": PopulationBasedTraining,
    "fifo": FIFOScheduler,
}


def settings(**kw) -> SpaceSettings:
    base = dict(dataset="toon", description="t", metric="val_loss", mode="min", max_epochs=9,
                grace_period=1, reduction_factor=3, num_samples=4, sampler="random")  # fmt: skip
    return SpaceSettings(**(base | kw))


def test_every_scheduler_has_a_builder() -> None:
    assert set(KINDS) == set(SCHEDULERS) == set(BUILDERS)  # the registry and the settings agree


@pytest.mark.parametrize("kind", SCHEDULERS)
def test_make_scheduler_builds_each_kind_from_the_settings(kind: str, tmp_path: Path) -> None:
    s = settings(scheduler=kind)
    sched = make_scheduler(s, str(tmp_path / ASHA_STATE))
    assert type(sched) is KINDS[kind]
    if kind == "fifo":
        return
    # the study's metric and mode, epochs as the time unit
    assert (sched._metric, sched._mode, sched._time_attr) == ("val_loss", "min", "epoch")
    max_t = {"asha": "_max_t", "hyperband": "_max_t_attr"}
    if kind in max_t:
        assert getattr(sched, max_t[kind]) == 9
    if kind == "median":
        assert sched._grace_period == 1 and sched._min_samples_required == 3
    if kind == "pbt":
        assert sched._perturbation_interval == 1 and sched._custom_explore_fn.knobs == ["lr"]
    # Ray refuses a metric given twice: build_tuner's TuneConfig names none
    assert sched.set_search_properties(None, None)


def test_unknown_scheduler_names_every_choice() -> None:
    with pytest.raises(ValueError, match="scheduler='bohb': expected one of") as e:
        settings(scheduler="bohb")
    assert all(k in str(e.value) for k in SCHEDULERS)
    # --set: the new values are accepted, a bad one lists them
    s = settings()
    assert apply_set(s, parse_set(["scheduler=median"]), {}).scheduler == "median"
    with pytest.raises(ValueError, match="--set scheduler=bohb") as e:
        apply_set(s, parse_set(["scheduler=bohb"]), {})
    assert all(k in str(e.value) for k in SCHEDULERS)
    # make_scheduler's own guard, for a name that bypassed SpaceSettings
    odd = settings()
    object.__setattr__(odd, "scheduler", "bohb")
    with pytest.raises(ValueError, match="unknown scheduler 'bohb'"):
        make_scheduler(odd, "")


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"scheduler": "pbt", "num_samples": 1}, "num_samples=1"),
        ({"scheduler": "pbt", "grace_period": 9}, "grace_period=9"),
        ({"scheduler": "pbt", "sampler": "tpe"}, "sampler='tpe'"),
    ],
)
def test_options_that_do_not_fit_the_scheduler_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"SpaceSettings.{field}"):
        settings(**kw)


def test_pbt_without_a_nuisance_knob_fails_naming_the_roles() -> None:
    s = settings(scheduler="pbt", roles={"lr": "scientific"})
    with pytest.raises(ValueError, match="SpaceSettings.roles=.*'pbt'"):
        make_scheduler(s, "")


def test_pbt_population_is_drawn_by_the_space_and_perturbed_in_lr_only() -> None:
    def space(trial: optuna.Trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True), "width": 8}

    s = settings(scheduler="pbt", num_samples=3, starting_points=({"lr": 0.01},))
    pop = pbt_population(space, s, {"model": "vanilla_cnn"}, 7, None)
    assert [c["seed"] for c in pop] == [70_000, 70_001, 70_002]
    assert pop[0]["lr"] == 0.01 and pop[0]["suggested"] == {"lr": 0.01}
    assert all(c["model"] == "vanilla_cnn" and c["width"] == 8 for c in pop)
    # perturbation: lr times 0.8 or 1.2, the rest untouched, the same for the same seed
    a, b = PerturbKnobs(["lr"], 3), PerturbKnobs(["lr"], 3)
    new = [a(dict(c)) for c in pop]
    assert new == [b(dict(c)) for c in pop]
    for old, c in zip(pop, new, strict=True):
        assert round(c["lr"] / old["lr"], 6) in (0.8, 1.2)
        assert {k: v for k, v in c.items() if k != "lr"} == {
            k: v for k, v in old.items() if k != "lr"
        }
    with pytest.raises(ValueError, match="set none of lr"):
        pbt_population(lambda t: {"width": 8}, s, {}, 7, None)


def test_pbt_population_makes_one_trial_per_config_as_drawn(tmp_path: Path) -> None:
    """Each trial's config is its drawn config exactly: an empty list and a conditional key only
    some configs have survive (Ray's points_to_evaluate would drop or borrow them)."""
    from ray import tune

    configs = [{"lr": 0.1, "head_dense": [], "suggested": {"lr": 0.1}},
               {"lr": 0.2, "momentum": 0.9, "head_dense": [64]}]  # fmt: skip
    pop = Population(configs, str(tmp_path), max_concurrent=1)
    pop.add_configurations(tune.Experiment("x", run=lambda c: None, config={},
                                           storage_path=str(tmp_path)))  # fmt: skip
    first = pop.next_trial()
    assert first.config == configs[0] and pop.next_trial() is None  # max_concurrent
    pop.on_trial_complete(first.trial_id)
    second = pop.next_trial()
    assert second.config == configs[1] and second.trial_id != first.trial_id
    pop.on_trial_complete(second.trial_id)
    assert pop.next_trial() is None and pop.is_finished()
    # restored in a copied study's folder, it saves there, not where its state was saved
    moved = Population(configs, str(tmp_path / "copy"))
    moved.set_state(pop.get_state())
    assert moved.study_dir == str(tmp_path / "copy") and moved.is_finished()


@pytest.mark.parametrize("kind", ["hyperband", "median", "pbt"])
def test_resume_with_a_scheduler_ray_rebuilds_empty_is_refused(kind: str, tmp_path: Path) -> None:
    check_resumable(kind, str(tmp_path))  # no tuner yet: nothing to resume, the study starts
    (tmp_path / "tuner.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot resume rung state for"):
        check_resumable(kind, str(tmp_path))
    for ok in ("asha", "fifo"):
        check_resumable(ok, str(tmp_path))


def _asha(path: Path) -> StudyASHA:
    return StudyASHA(time_attr="epoch", metric="val_acc", mode="max", max_t=4, grace_period=1,
                     reduction_factor=2, state_path=str(path))  # fmt: skip


def test_asha_rung_state_round_trip(tmp_path: Path) -> None:
    """Without Ray workers: decisions recorded by one scheduler, written, read back by a new one
    (as after Tuner.restore) equal; a trial it stopped is stopped again at its next result."""
    path = tmp_path / ASHA_STATE
    first = _asha(path)
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(4)]
    actions = {}
    for t in trials:
        first.on_trial_add(None, t)
    for epoch in (1, 2):
        for i, t in enumerate(trials):
            if actions.get(t.trial_id) == TrialScheduler.STOP:
                continue
            acc = 1 - 0.1 * i + 0.01 * epoch  # each trial worse than the ones before
            actions[t.trial_id] = first.on_trial_result(None, t, {"epoch": epoch, "val_acc": acc})
    assert TrialScheduler.STOP in actions.values()
    table = pd.read_parquet(path)
    assert set(table["milestone"]) == {1, 2}

    again = _asha(path)
    again.on_trial_add(None, SimpleNamespace(trial_id="t9"))  # its first event loads the file
    assert [(m, dict(r)) for m, r in again._brackets[0]._rungs] == [
        (m, dict(r)) for m, r in first._brackets[0]._rungs
    ]
    assert again._stopped == first._stopped and again._num_stopped == first._num_stopped
    stopped = next(iter(first._stopped))
    result = {"epoch": 3, "val_acc": 1.0}
    assert again.on_trial_result(None, SimpleNamespace(trial_id=stopped), result) == "STOP"


def test_report_draws_the_rungs_asha_recorded(tmp_path: Path) -> None:
    """The fixture's settings (grace 1, rf 2, 8 epochs) would give rungs 1, 2, 4; the file has
    records at 1 and 2 only (and at max_epochs, which is the end, not a rung)."""
    sd = make_study(tmp_path)
    assert rung_epochs(load_study(str(sd)).rungs, 8) == []  # no file: no rungs drawn
    rows = {"bracket": [0] * 4, "milestone": [1, 1, 2, 8], "trial_id": ["a", "b", "a", "a"],
            "value": [0.1, 0.2, 0.3, 0.4], "stopped": [False, True, False, False]}  # fmt: skip
    pd.DataFrame(rows).to_parquet(sd / ASHA_STATE)
    d = load_study(str(sd))
    assert rung_epochs(d.rungs, 8) == [1, 2]
    assert "ASHA rungs" in curves_section(d)
    meta = json.loads((sd / "study.json").read_text())
    meta["settings"]["scheduler"] = "median"
    (sd / "study.json").write_text(json.dumps(meta))
    assert stopped_early("median") in curves_section(load_study(str(sd)))


def test_stopped_early_wording_comes_from_one_constant() -> None:
    status, why = trial_status({"epoch": 2, "val_acc": 0.3}, False)
    assert status == "stopped" and why == f"{stopped_early()} after epoch 2"
    assert stopped_early("asha") == "stopped early by ASHA"


# One small real study per scheduler kind besides ASHA (tests/run/test_run.py runs ASHA's).
SMOKE_SPACE = """
from study.spaces.settings import SpaceSettings
SETTINGS = SpaceSettings(dataset="toon", description="scheduler smoke", max_epochs=3,
                         grace_period=1, reduction_factor=3, num_samples=3, image_size=32,
                         sampler="random", scheduler={kind!r})
def space(trial):
    return {{"model": "vanilla_cnn", "width": 8, "depth": 3, "head_dense": [],
            "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True), "batch_size": 64}}
"""


@pytest.mark.parametrize(
    "opts, words",
    [
        (["--set", "scheduler=pbt", "--set", "sampler=tpe"], "SpaceSettings.sampler='tpe'"),
        (["--set", "scheduler=pbt", "--set", 'roles={"lr": "scientific"}'], "SpaceSettings.roles="),
        (["--set", "scheduler=bohb"], "expected one of asha, hyperband, median, pbt, fifo"),
        # PBT keeps no Optuna study: a storage for one would stay empty, silently
        (["--set", "scheduler=pbt", "--optuna-storage", "sqlite:////tmp/x.db"], "'pbt' keeps no"),
    ],
)
def test_a_scheduler_that_does_not_fit_fails_before_ray_starts(opts, words, tiny_toon, tmp_path,
                                                                capsys) -> None:  # fmt: skip
    import ray

    from study.run import __main__ as run

    space = tmp_path / "space.py"
    space.write_text(SMOKE_SPACE.format(kind="asha"))
    args = ["--space", str(space), "--data-dir", str(tiny_toon), "--storage", str(tmp_path / "s")]
    rc = run.main([*args, *opts])
    assert rc == 2 and words in capsys.readouterr().err
    assert not ray.is_initialized() and not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def ray_cluster(shared_ray):
    """The test head, joined once for the three smoke studies (run_study leaves a caller's Ray
    up): a CLI process and a Ray start per study were a third of their time (93 s -> 62 s at
    load 2-4). Set up by the first smoke study, after the tests above that check no Ray is up."""
    with joined_ray(shared_ray):
        yield


@pytest.mark.study
@pytest.mark.timeout(STUDY_TEST_TIMEOUT_S)  # a study in-process; the first also starts Ray
@pytest.mark.parametrize("kind", ["hyperband", "median", "pbt"])
def test_a_small_study_runs_to_the_end_with_each_scheduler(kind, ray_cluster, tiny_toon,
                                                            tmp_path) -> None:  # fmt: skip
    import ray

    from study.run import __main__ as run

    space = tmp_path / "space.py"
    space.write_text(SMOKE_SPACE.format(kind=kind))
    args = ["--space", str(space), "--data-dir", str(tiny_toon), "--storage", str(tmp_path / "s")]
    rc = run.main([*args, "--name", kind, "--max-concurrent", "2", "--no-report"])
    assert rc == 0
    assert ray.is_initialized()  # the module's Ray, reused
    trials = pd.read_parquet(tmp_path / "s" / kind / "trials.parquet")
    assert len(trials) == 3 and set(trials["status"]) <= {"finished", "stopped"}, trials
    meta = json.loads((tmp_path / "s" / kind / "study.json").read_text())
    assert meta["settings"]["scheduler"] == kind
    # only a study that asks Optuna records its storage, and then the file exists
    db = tmp_path / "s" / kind / "optuna.db"
    if kind == "pbt":
        assert meta["optuna_storage"] is None and not db.exists()
    else:
        assert meta["optuna_storage"] == f"sqlite:///{db}" and db.exists()
    # Ray's last save, zipped whole by whichever search algorithm saves it (PBT's: Population)
    last = read_last_save(str(tmp_path / "s" / kind)) or {}
    assert any(n.startswith("experiment_state-") for n in last) and len(last) >= 2, sorted(last)
    assert all((tmp_path / "s" / kind / n).read_bytes() == data for n, data in last.items())
