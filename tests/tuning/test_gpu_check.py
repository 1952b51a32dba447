"""Issue #27 item 6: no silent CPU fallback. A torch that cannot use CUDA (a driver older than the
wheel's CUDA) on a worker Ray gives GPUs once trained every trial on the CPU and exited 0. Now a
trial fails at once, and the driver checks one worker before tuning and stops, one line, before
any trial. Ray's GPUs here are advertised (`ray.init(num_gpus=1)`), and torch's CUDA check is
mocked: monkeypatched in this process, STUDY_FAKE_NO_CUDA in Ray's workers (they import torch
afresh), so the tests mean the same on a machine with a GPU."""

from __future__ import annotations

import pytest
import ray
import torch
from conftest import QUIET_RAY

from study.run import __main__ as run
from study.run import driver
from study.tuning import gpu_check, trainable
from study.tuning.gpu_check import FAKE_NO_CUDA, CudaUnusableError

TOO_OLD = "The NVIDIA driver on your system is too old (found version 11040)"


@pytest.fixture
def no_cuda_here(monkeypatch) -> None:
    """This process's torch as on a machine whose driver is older than the wheel's CUDA."""

    def init() -> None:
        raise RuntimeError(f"{TOO_OLD}. Please update your GPU driver")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", init)
    monkeypatch.setattr(gpu_check, "driver_version", lambda: "470.82.01")


def test_cuda_unusable_trial_fails_at_once(no_cuda_here, monkeypatch) -> None:
    """A trial Ray gave a GPU raises before training, naming torch's CUDA, the driver and what
    to do; it used to train on the CPU and record device=cpu."""
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])

    def trains(*_, **__) -> None:
        raise AssertionError("the trial trained")

    monkeypatch.setattr(trainable, "run_trial", trains)
    monkeypatch.setattr(trainable, "run_trial_cv", trains)
    with pytest.raises(CudaUnusableError) as e:
        trainable.train_trial({}, data=None)
    text = str(e.value)
    assert "\n" not in text and "GPU(s) ['0']" in text, text
    assert f"torch.version.cuda={torch.version.cuda}" in text and TOO_OLD in text, text
    assert "NVIDIA driver 470.82.01" in text and "--gpus-per-trial 0" in text, text


def test_cuda_unusable_check_passes_a_trial_without_gpus(no_cuda_here) -> None:
    gpu_check.require_cuda([], "node")  # a CPU trial: torch's CUDA does not matter


def test_cuda_unusable_driver_version_unknown_without_nvidia_smi(monkeypatch) -> None:
    def missing(*_, **__):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(gpu_check.subprocess, "run", missing)
    monkeypatch.setattr(gpu_check, "open", missing, raising=False)  # /proc/driver/nvidia
    assert gpu_check.driver_version() == "unknown"


@pytest.fixture
def fake_gpu_ray(monkeypatch):
    """A local Ray advertising one GPU, whose workers' torch cannot use CUDA."""
    monkeypatch.setenv(FAKE_NO_CUDA, "1")  # before ray.init: its workers inherit it
    ray.init(num_gpus=1, **QUIET_RAY)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.timeout(240)
def test_cuda_unusable_worker_stops_the_study_before_any_trial(
    fake_gpu_ray, tiny_toon, tmp_path, monkeypatch, capsys
) -> None:
    """On a Ray that advertises a GPU, trials ask for one (the default): the driver's check runs
    one task with that request, whose torch cannot use CUDA, and the study stops with one line
    and a non-zero exit before any trial; nothing is written."""

    def tuner(**_):
        raise AssertionError("the tuner was built")

    monkeypatch.setattr(driver, "build_tuner", tuner)
    args = ["--space", "demo", "--smoke-test", "--data-dir", str(tiny_toon), "--no-report"]
    rc = run.main([*args, "--storage", str(tmp_path / "s"), "--name", "x"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    line = lines[0]
    assert "Ray gives each trial 1 GPU(s)" in line and "stopped before any trial" in line, line
    assert f"torch.version.cuda={torch.version.cuda}" in line and "NVIDIA driver " in line, line
    assert "--gpus-per-trial 0" in line, line
    assert not (tmp_path / "s" / "x").exists()  # no study.json: nothing started, nothing finished
    assert ray.is_initialized()  # the caller's Ray stays up
