"""Compile when it pays (study.training.compiling), recorded per trial; and the cost arithmetic
behind the
GPU check's study estimate (benchmarks/study_cost.py) and its summary table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import gpu_instruments, study_cost
from benchmarks.harness import inline_trial, synthetic_split, trial_config
from study.training.compiling import (
    COMPILE_S,
    COMPILE_SPEEDUP,
    StepProbe,
    compile_choice,
    decide_compile,
)
from study.training.config import TrainConfig
from study.training.steps import TrialData

CUDA = torch.device("cuda")  # only a device name here: nothing runs on it


def test_compile_pays_only_when_the_steps_saved_outweigh_compiling() -> None:
    on, why = decide_compile(0.010, 0.006, 60.0, 20_000)  # 80 s saved for 60 s
    assert on and why.startswith("pays") and "80 s saved vs 60 s" in why
    on, why = decide_compile(0.010, 0.006, 60.0, 10_000)  # 40 s saved
    assert not on and why.startswith("does not pay") and "10000 planned steps" in why
    assert not decide_compile(0.010, 0.006, 40.0, 10_000)[0]  # break-even is not a gain
    assert not decide_compile(0.010, 0.012, 0.0, 10_000)[0]  # slower when compiled
    on, why = decide_compile(float("nan"), 0.006, 60.0, 10**9)
    assert not on and "not timed" in why


def test_auto_decides_from_the_timed_step_and_the_measured_constants() -> None:
    assert compile_choice(True, torch.device("cpu"), None, 0) == (
        True,
        "compile=True in the config",
    )
    assert compile_choice(False, CUDA, 1.0, 10**9)[0] is False
    on, why = compile_choice("auto", torch.device("cpu"), 1.0, 10**9)
    assert not on and "CPU" in why
    on, why = compile_choice("auto", CUDA, None, 10**6)
    assert not on and "too short" in why
    step = 0.01
    saved_per_step = step - step / COMPILE_SPEEDUP
    enough = int(COMPILE_S / saved_per_step) + 1
    assert compile_choice("auto", CUDA, step, enough)[0]
    on, why = compile_choice("auto", CUDA, step, enough - 2)
    assert not on and why.startswith("auto: does not pay")


def test_the_config_takes_true_false_or_auto() -> None:
    assert TrainConfig(model="m").compile == "auto"
    assert TrainConfig(model="m", compile=True).compile is True
    with pytest.raises(ValueError, match=r"config compile='yes': expected true, false or 'auto'"):
        TrainConfig(model="m", compile="yes")
    with pytest.raises(ValueError, match="compile=1"):
        TrainConfig(model="m", compile=1)


def test_every_trial_reports_its_compile_decision_on_cpu(tmp_path) -> None:
    data = TrialData(synthetic_split(8, 32), synthetic_split(4, 32, 1), list("0123456"))
    for setting, reason in (("auto", "auto: off on CPU"), (False, "compile=False in the config")):
        config = trial_config("vanilla_cnn", 32, 4, 1, 0.0, width=4, depth=2, compile=setting)
        reports = inline_trial(config, data, tmp_path / str(setting))
        ep = [r for r in reports if "epoch" in r]
        assert len(ep) == 2
        assert {r["compile"] for r in ep} == {"off"}
        assert all(r["compile_reason"].startswith(reason) for r in ep)


def test_the_step_probe_times_steps_after_the_first_ones() -> None:
    probe = StepProbe(skip=1, steps=3)
    cpu = torch.device("cpu")
    for step in range(10):
        probe.at(step, 10, cpu)
        if step < 4:
            assert probe.step_s is None  # steps 1..3 are still running
    assert probe.step_s is not None and probe.step_s >= 0 and probe.steps_per_epoch == 10
    short = StepProbe(skip=2)
    for step in range(3):  # step 2 is the last one (it may be a partial batch): nothing to time
        short.at(step, 3, cpu)
    assert short.step_s is None


@pytest.mark.parametrize(
    "plan",
    [
        study_cost.StudyPlan(num_samples=40),
        study_cost.StudyPlan(num_samples=25, max_epochs=27, grace_period=1, reduction_factor=3),
        study_cost.StudyPlan(num_samples=30, max_epochs=4, grace_period=1, reduction_factor=2),
    ],
)
def test_asha_epochs_follow_rays_scheduler(plan) -> None:
    """Trial by trial, the same stops as Ray's own bracket for the same results."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    class Trial:
        def __init__(self, i: int):
            self.trial_id = str(i)

    rng = np.random.default_rng(1)
    for _ in range(5):
        q = rng.random(plan.num_samples)
        bracket = _Bracket(plan.grace_period, plan.max_epochs, plan.reduction_factor, 0, True)
        expected = []
        for i, quality in enumerate(q):
            trial = Trial(i)
            for epoch in range(1, plan.max_epochs + 1):
                if bracket.on_result(trial, epoch, quality) == TrialScheduler.STOP:
                    break
            expected.append(epoch)
        assert study_cost.asha_trial_epochs(q, plan).tolist() == expected


def test_the_study_estimate_uses_the_space_and_splits_it_names() -> None:
    from study.spaces.cover import describe_hyperparameters
    from study.spaces.loader import load_space

    space = load_space("googlenet_ferg")
    plan = study_cost.GOOGLENET_FERG
    for name in ("max_epochs", "grace_period", "reduction_factor", "image_size"):
        assert getattr(plan, name) == getattr(space.settings, name), name
    assert plan.num_samples == 64  # issue 19's study, not the space's default
    choices = describe_hyperparameters(space)["batch_size"]["choices"]
    assert tuple(choices) == plan.batch_sizes
    assert study_cost.rungs(30, 3, 3) == [3, 9, 27]

    train, val = study_cost.ferg_split_images()  # 4 characters train, 1 validates
    assert train == pytest.approx(4 * val, abs=2) and train + 2 * val == pytest.approx(
        55_767, abs=3
    )
    epochs = study_cost.asha_epochs(plan)
    textbook = plan.num_samples * (3 + 6 / 3 + 18 / 9 + 3 / 27)  # 1/rf of the trials go on
    assert textbook < epochs < plan.num_samples * plan.max_epochs
    assert study_cost.study_gpu_hours(epochs, 36.0, 64, 10.0) == pytest.approx(
        (epochs * 36 + 640) / 3600
    )


def test_the_summary_judges_every_cell_against_its_goal() -> None:
    assert gpu_instruments.goal("vanilla_cnn64 (a)/(b)") == (">=", 0.95)
    assert gpu_instruments.goal("googlenet224 train-only (a)/(b)") is None
    results = {
        "googlenet224 (a)/(b)": 0.86,
        "ferg first/steady epoch": 1.2,
        "study GPU-hours": 3.5,
        "compile pays, mean trial": "no",
        "ferg RSS MiB": 100.0,
        "compile gpu util_mean": 4.0,
    }
    text = gpu_instruments.summary_table(results, cpu=False)
    lines = {line.split()[0]: line for line in text.splitlines()[4:-1]}
    assert "MISSED" in lines["googlenet224"] and "met" in lines["ferg"]
    assert "study" in lines and "compile" in lines and "RSS" not in text and "util" not in text
    on_cpu = gpu_instruments.summary_table(results, cpu=True)
    assert "not judged" in on_cpu and "goal" not in on_cpu and "MISSED" not in on_cpu
