"""The trainable's per-epoch checkpoint is written by a background thread while it validates, and
its training loop reads the device once per epoch (issue 19's CPU-buildable part)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import gpu_check, gpu_phases
from benchmarks.harness import inline_trial, synthetic_split, trial_config
from study.data import Augment, AugmentConfig
from study.training import checkpoints, cv_trial, faults, steps, trial
from study.training.checkpoints import (
    CheckpointWriter,
    LocalCheckpoint,
    save_state,
    snapshot,
    write_best,
    write_last,
)
from study.training.config import TrainConfig
from study.training.cv_trial import CV_STATE, run_trial_cv
from study.training.steps import TrialData, build_model, make_optimizer

CPU = torch.device("cpu")
CLASSES = [str(i) for i in range(7)]
FILES = (checkpoints.LAST, checkpoints.META, checkpoints.BEST)


def _config(**extra) -> dict:
    return trial_config("vanilla_cnn", 32, 4, 1, 0.5, width=4, depth=2, **extra)


def _data(n: int = 12) -> TrialData:
    return TrialData(synthetic_split(n, 32), synthetic_split(4, 32, 1), CLASSES)


def _model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    cfg = TrainConfig.from_config(_config())
    torch.manual_seed(0)
    model = build_model(cfg, len(CLASSES), CPU)
    return model, make_optimizer(cfg, model)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    x = torch.randn(4, 3, 32, 32)
    loss = model(x).logsumexp(1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_async_writes_match_the_sync_path_while_training_goes_on(tmp_path) -> None:
    """Files written by the writer thread after the model has trained on are byte-identical to a
    synchronous save taken at the snapshot: the snapshot is a copy, not a view."""
    model, opt = _model_and_optimizer()
    _step(model, opt)  # the optimiser has state (Adam's moments) to copy too
    history, best = [{"epoch": 1, "val_acc": 0.5, "val_loss": 1.0}], {"value": 0.5, "epoch": 1}
    sync_dir, async_dir = tmp_path / "sync", tmp_path / "async"
    sync_dir.mkdir()
    async_dir.mkdir()
    save_state(sync_dir, model, opt, 1, history, best)

    writer = CheckpointWriter()
    gate = threading.Event()
    writer.submit(gate.wait)  # the thread is busy: nothing is written before training goes on
    snap = snapshot(model, opt)
    writer.submit(write_last, async_dir, snap)
    writer.submit(checkpoints.write_meta, async_dir, 1, list(history), best)
    writer.submit(write_best, async_dir, snap, snap.model)
    before = [p.detach().clone() for p in model.parameters()]
    _step(model, opt)  # the next epoch trains in place meanwhile
    torch.rand(3)  # and draws from torch's RNG
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    gate.set()
    writer.wait()
    writer.close()
    for name in FILES:
        assert (async_dir / name).read_bytes() == (sync_dir / name).read_bytes(), name


def test_a_writer_error_surfaces_in_the_trial(monkeypatch, tmp_path) -> None:
    threads: list[str] = []

    def full_disk(path: Path, snap) -> None:
        threads.append(threading.current_thread().name)
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(trial, "write_last", full_disk)
    reports: list[dict] = []
    with pytest.raises(OSError, match="No space left"):
        inline_trial(_config(epochs=2), _data(), tmp_path, reports=reports)
    assert threads and threads[0].startswith("checkpoint-writer")
    assert not [r for r in reports if "epoch" in r]  # no report without its checkpoint
    assert not list(tmp_path.iterdir())


def test_the_directory_outlives_pending_writes_when_the_epoch_fails(tmp_path) -> None:
    writer = CheckpointWriter()
    written: list[Path] = []

    def slow_write(path: Path) -> None:
        time.sleep(0.3)
        (path / "x.pt").write_bytes(b"x")  # fails if the directory is gone already
        written.append(path)

    with pytest.raises(RuntimeError, match="validation broke"), writer.directory() as d:
        writer.submit(slow_write, d)
        raise RuntimeError("validation broke")
    assert written == [d] and not d.exists()
    writer.close()


def test_restore_reads_the_checkpoints_and_skips_a_corrupt_one(tmp_path) -> None:
    """What a retried trial finds: the newest readable checkpoint (files written by the thread),
    an older one when the newest is corrupt, and checkpoints of the old one-file layout."""
    from ray import tune

    inline_trial(_config(epochs=2), _data(), tmp_path)
    newest, older = tmp_path / "checkpoint_000002", tmp_path / "checkpoint_000001"
    found = [LocalCheckpoint(str(newest)), LocalCheckpoint(str(older))]
    # what the Ray trainable passes: Ray's checkpoint and its older siblings, newest first
    ray_found = checkpoints.candidates(tune.Checkpoint.from_directory(str(newest)))
    assert [Path(c.path) for c in ray_found] == [newest, older]
    saved = torch.load(newest / checkpoints.LAST, weights_only=True)

    model, opt = _model_and_optimizer()
    epoch, history, best, best_state, note = checkpoints.restore(found, model, opt, CPU)
    assert epoch == 2 and [h["epoch"] for h in history] == [1, 2] and best["epoch"] in (1, 2)
    assert "resumed from checkpoint" in note and best_state is not None
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved["model"][k]), k

    (newest / checkpoints.LAST).write_bytes(b"this is not a checkpoint")
    epoch, *_, note = checkpoints.restore(found, model, opt, CPU)
    assert epoch == 1 and "unreadable" in note and "(epoch 1)" in note

    # before meta.pt, last.pt held epoch, history and best itself
    state = torch.load(older / checkpoints.LAST, weights_only=True)
    meta = torch.load(older / checkpoints.META, weights_only=True)
    torch.save({**state, **meta}, older / checkpoints.LAST)
    (older / checkpoints.META).unlink()
    epoch, history, *_ = checkpoints.restore(found[1:], model, opt, CPU)
    assert epoch == 1 and len(history) == 1


def test_best_weights_stay_those_of_the_best_epoch(tmp_path) -> None:
    """best.pt is the best epoch's snapshot, kept on the host, not the latest weights."""
    reports = inline_trial(_config(epochs=3, lr=3e-3), _data(24), tmp_path)
    ep = [r for r in reports if "epoch" in r]
    last = tmp_path / "checkpoint_000003"
    best = torch.load(last / checkpoints.BEST, weights_only=True)
    best_epoch = ep[-1]["best_epoch"]
    assert best_epoch < 3  # val_acc did not improve on this data: the case worth checking
    at_best = torch.load(
        tmp_path / f"checkpoint_{best_epoch:06d}" / checkpoints.LAST, weights_only=True
    )["model"]
    latest = torch.load(last / checkpoints.LAST, weights_only=True)["model"]
    assert best.keys() == at_best.keys()
    assert all(torch.equal(v, at_best[k]) for k, v in best.items())
    assert not all(torch.equal(v, latest[k]) for k, v in best.items())


def test_the_training_loop_reads_the_device_once_per_epoch() -> None:
    """The CPU stand-in for the GPU's sync count: host reads of tensor values by study code do
    not grow with the steps of an epoch (a per-step read is a per-step sync on a GPU)."""
    short = gpu_phases.host_reads_in_epoch(gpu_check.CPU, 2)
    long = gpu_phases.host_reads_in_epoch(gpu_check.CPU, 6)
    assert len(long) == len(short), long
    assert [c for c in long if "steps.py" in c or "trial.py" in c] == []
    assert long.count("feed.py:total tolist") == 1


def test_a_nan_is_still_caught_at_its_step_on_cpu() -> None:
    """DeviceSums' poll reads immediately on CPU: the NaN step raises before the optimiser
    steps, as the per-step check did."""
    cfg = TrainConfig.from_config(_config(fault="nan@1"))
    data = _data(16)
    t = trial.setup_trial(cfg, data, CPU)
    t.aug = Augment(AugmentConfig.from_strength(0.0))
    t.gen = torch.Generator().manual_seed(0)
    before = [p.detach().clone() for p in t.model.parameters()]
    with pytest.raises(steps.Diverged, match=r"nan in epoch 1 after 0 images"):
        trial.train_epoch(t, data, 1, faults.parse(cfg.fault))
    assert all(torch.equal(a, b) for a, b in zip(before, t.model.parameters(), strict=True))


def test_the_cross_validation_trial_writes_its_checkpoint_on_the_writer_thread(
    monkeypatch,
) -> None:
    """cv.pt and best.pt are saved by run_trial's CheckpointWriter, and complete when reported;
    an error of the writer fails the trial before its report."""
    saved: list[tuple[str, str]] = []
    real_save = torch.save

    def spy(obj, f, *args, **kwargs) -> None:
        saved.append((Path(f).name, threading.current_thread().name))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    reported: list[list[str]] = []

    def report(metrics: dict, directory: Path) -> None:
        reported.append(sorted(p.name for p in directory.iterdir()))

    data = TrialData(synthetic_split(12, 32), synthetic_split(0, 32, 1), CLASSES, np.arange(12) % 2)
    cfg = TrainConfig.from_config(_config(epochs=2))
    run_trial_cv(cfg, data, report, list, device=CPU)
    assert reported == [sorted([CV_STATE, checkpoints.BEST])] * 2
    assert sorted(name for name, _ in saved) == sorted([CV_STATE, checkpoints.BEST] * 2)
    assert all(thread.startswith("checkpoint-writer") for _, thread in saved), saved

    def full_disk(*args) -> None:
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(cv_trial, "write_cv", full_disk)
    reported.clear()
    with pytest.raises(OSError, match="No space left"):
        run_trial_cv(cfg, data, report, list, device=CPU)
    assert reported == []  # no report without its checkpoint
