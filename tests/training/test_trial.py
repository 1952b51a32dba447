"""The trial without Ray (`study.training.trial`): what `run_trial` reports and checkpoints, how it
resumes
and ends, and that the module imports with Ray blocked. Tiny CNN, 32 px, a few images, CPU."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from study.data import SplitArrays
from study.training import checkpoints
from study.training.checkpoints import LocalCheckpoint
from study.training.config import TrainConfig
from study.training.cv_trial import CV_STATE, run_trial_cv
from study.training.steps import TrialData, lr_factor
from study.training.trial import run_trial, setup_trial

CPU = torch.device("cpu")
CLASSES = list("0123456")


def _split(n: int, seed: int) -> SplitArrays:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return SplitArrays(images, np.arange(n, dtype=np.int64) % 7, [f"{i}" for i in range(n)])


def _data(folds: bool = False) -> TrialData:
    if folds:
        return TrialData(_split(12, 0), _split(0, 1), CLASSES, folds=np.arange(12) % 2)
    return TrialData(_split(12, 0), _split(6, 1), CLASSES)


def _cfg(**extra: Any) -> TrainConfig:
    config = {
        "model": "vanilla_cnn",
        "width": 4,
        "depth": 2,
        "dropout": 0.3,  # draws from torch's RNG: a resume must restore it
        "image_size": 32,
        "batch_size": 4,
        "max_epochs": 3,
        "aug_strength": 0.5,
        "compile": False,
        "seed": 5,
    }
    return TrainConfig.from_config(config | extra)


class Recorder:
    """A caller of run_trial: keeps every report's metrics and a copy of its checkpoint."""

    def __init__(self, root: Path, resume_from: list[Path] | None = None) -> None:
        self.root, self.metrics, self.dirs = root, [], []
        self.resume_from = resume_from or []
        self.asked = 0

    def report(self, metrics: dict[str, Any], directory: Path) -> None:
        assert sorted(p.name for p in directory.iterdir()) == sorted(
            [checkpoints.LAST, checkpoints.META, checkpoints.BEST]
        )  # complete when reported: the writer thread has finished
        dest = self.root / f"checkpoint_{len(self.metrics) + 1:06d}"
        shutil.copytree(directory, dest)
        self.metrics.append(metrics)
        self.dirs.append(dest)

    def checkpoint(self) -> list[LocalCheckpoint]:
        self.asked += 1
        return [LocalCheckpoint(str(p)) for p in self.resume_from]


def test_the_trial_imports_with_ray_blocked(monkeypatch) -> None:
    """Imported afresh (torch is loaded already: fast) with `import ray` made to fail; the
    modules imported before are put back afterwards."""
    monkeypatch.setitem(sys.modules, "ray", None)
    for name in [m for m in sys.modules if m == "study" or m.startswith("study.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in (
        "study.training.trial",
        "study.training.cv_trial",
        "study.training.fit",
        "study.training.checkpoints",
    ):
        importlib.import_module(name)


def test_run_trial_reports_every_epoch_with_its_checkpoint(tmp_path) -> None:
    rec = Recorder(tmp_path)
    run_trial(_cfg(), _data(), rec.report, rec.checkpoint, device=CPU, node="here")
    assert rec.asked == 1
    assert [m["epoch"] for m in rec.metrics] == [1, 2, 3]
    assert [m["end_reason"] for m in rec.metrics] == ["", "", "max_epochs"]
    last = rec.metrics[-1]
    assert last["node"] == "here" and last["device"] == "cpu" and last["compile"] == "off"
    assert all(np.isfinite(m["train_loss"]) and 0 <= m["val_acc"] <= 1 for m in rec.metrics)
    meta = torch.load(rec.dirs[-1] / checkpoints.META, weights_only=True)
    assert meta["epoch"] == 3 and [h["epoch"] for h in meta["history"]] == [1, 2, 3]
    assert meta["best"]["epoch"] == last["best_epoch"]
    # the model's GFLOPs at 32 px, as the report counts them for a study from before the column
    assert {m["gflops"] for m in rec.metrics} == {_report_gflops(32)} and last["gflops"] > 0


def _report_gflops(size: int) -> float:
    from study.report.architectures import _count_gflops

    options = {"width": 4, "depth": 2, "dropout": 0.3}
    return _count_gflops("vanilla_cnn", json.dumps(options, sort_keys=True), len(CLASSES), size)


def test_a_resumed_trial_trains_as_an_uninterrupted_one(tmp_path) -> None:
    """Resumed from epoch 1's checkpoint, epochs 2 and 3 match the uninterrupted run's: same
    weights, optimiser state, batch order and RNG (dropout, augmentation)."""
    whole = Recorder(tmp_path / "whole")
    run_trial(_cfg(), _data(), whole.report, whole.checkpoint, device=CPU)
    # a corrupt newest checkpoint is skipped, named, and the older one used
    corrupt = tmp_path / "corrupt"
    shutil.copytree(whole.dirs[1], corrupt)
    (corrupt / checkpoints.LAST).write_bytes(b"not a checkpoint")
    resumed = Recorder(tmp_path / "resumed", resume_from=[corrupt, whole.dirs[0]])
    run_trial(_cfg(), _data(), resumed.report, resumed.checkpoint, device=CPU)
    assert [m["epoch"] for m in resumed.metrics] == [2, 3]
    note = resumed.metrics[0]["restore_note"]
    assert "unreadable" in note and "resumed from checkpoint" in note and "(epoch 1)" in note
    for key in ("train_loss", "val_loss", "val_acc", "best_epoch"):
        assert [m[key] for m in resumed.metrics] == pytest.approx(
            [m[key] for m in whole.metrics[1:]], rel=1e-6
        ), key
    a = torch.load(whole.dirs[-1] / checkpoints.LAST, weights_only=True)["model"]
    b = torch.load(resumed.dirs[-1] / checkpoints.LAST, weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_pbt_restore_trains_with_the_perturbed_lr_not_the_checkpoints(tmp_path) -> None:
    """PBT's exploit step restarts a trial from another trial's checkpoint with a perturbed
    config (study.tuning.schedulers.PBT_KNOBS). The optimiser's saved state carries the old lr; the
    new one
    must win from the first resumed epoch, and change the weights it trains."""
    first = Recorder(tmp_path / "first")
    run_trial(_cfg(lr=1e-3, max_epochs=2), _data(), first.report, first.checkpoint, device=CPU)
    runs = {}
    for lr in (1e-3, 3e-3):  # unperturbed, and perturbed as PBT's explore step would (x3 here)
        rec = Recorder(tmp_path / f"lr{lr}", resume_from=[first.dirs[0]])
        cfg = _cfg(lr=lr, max_epochs=2)
        run_trial(cfg, _data(), rec.report, rec.checkpoint, device=CPU)
        assert [m["epoch"] for m in rec.metrics] == [2]
        assert rec.metrics[0]["lr"] == pytest.approx(lr * lr_factor(cfg, 1))
        runs[lr] = torch.load(rec.dirs[-1] / checkpoints.LAST, weights_only=True)
    # the unperturbed resume repeats the uninterrupted run; the perturbed one trains differently
    whole = torch.load(first.dirs[-1] / checkpoints.LAST, weights_only=True)["model"]
    same, perturbed = runs[1e-3]["model"], runs[3e-3]["model"]
    assert all(torch.allclose(whole[k], same[k], atol=1e-6) for k in whole)
    assert not all(torch.allclose(whole[k], perturbed[k], atol=1e-6) for k in whole)
    saved = runs[3e-3]["optimizer"]["param_groups"]
    assert all(g["lr"] == pytest.approx(3e-3 * lr_factor(_cfg(max_epochs=2), 1)) for g in saved)


def test_a_diverged_trial_is_reported_not_raised(tmp_path) -> None:
    rec = Recorder(tmp_path)
    run_trial(_cfg(fault="nan@2"), _data(), rec.report, rec.checkpoint, device=CPU)
    assert [m["end_reason"] for m in rec.metrics] == ["", "diverged"]
    assert "nan in epoch 2" in rec.metrics[-1]["error"]
    assert np.isnan(rec.metrics[-1]["val_acc"]) and rec.metrics[-1]["best_epoch"] == 1


def test_patience_ends_the_trial(tmp_path) -> None:
    rec = Recorder(tmp_path)
    # a vanishing lr and no batch norm: nothing changes after epoch 1, no epoch improves on it
    cfg = _cfg(lr=1e-12, patience=1, max_epochs=5, batch_norm=False)
    run_trial(cfg, _data(), rec.report, rec.checkpoint, device=CPU)
    assert [m["epoch"] for m in rec.metrics] == [1, 2]
    assert rec.metrics[-1]["end_reason"].startswith("early stopping")


def test_an_out_of_memory_error_at_every_size_ends_the_trial(tmp_path) -> None:
    rec = Recorder(tmp_path)
    run_trial(_cfg(fault="oom@1"), _data(), rec.report, rec.checkpoint, device=CPU)
    (m,) = rec.metrics
    assert m["end_reason"] == "oom" and "micro-batches of 2" in m["error"]
    assert m["micro_batch"] == 2 and "now runs as micro-batches of 2" in m["restore_note"]


def test_setup_trial_seeds_the_model_unless_told_not_to() -> None:
    a = setup_trial(_cfg(), _data(), CPU)
    b = setup_trial(_cfg(), _data(), CPU)
    c = setup_trial(_cfg(), _data(), CPU, reseed=False)  # a second fold's model
    pa, pb, pc = (next(t.model.parameters()) for t in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert a.fit.micro == 4 and a.params == sum(p.numel() for p in a.model.parameters())


def test_the_cross_validation_trial_runs_without_ray(tmp_path) -> None:
    reports: list[dict] = []

    def report(metrics: dict[str, Any], directory: Path) -> None:
        assert (directory / CV_STATE).exists() and (directory / checkpoints.BEST).exists()
        reports.append(metrics)

    run_trial_cv(_cfg(max_epochs=2), _data(folds=True), report, lambda: [], device=CPU)
    assert [m["epoch"] for m in reports] == [1, 2]
    assert reports[-1]["cv_folds"] == 2 and reports[-1]["end_reason"] == "max_epochs"
    assert reports[-1]["gflops"] == _report_gflops(32)


def test_the_cross_validation_trial_halves_its_micro_batch_on_out_of_memory(tmp_path) -> None:
    """The CV trial trains through run_trial's BatchFit: a card that fits 2 images (fault
    oom_above@2) halves the micro-batch once, for every fold, and the folds then train as they
    would have with the whole batch (no batch norm, no dropout: nothing depends on it)."""
    runs: dict[str, list[dict]] = {"": [], "oom_above@2": []}
    for fault, reports in runs.items():
        cfg = _cfg(max_epochs=2, batch_norm=False, dropout=0.0, fault=fault)
        run_trial_cv(cfg, _data(folds=True), lambda m, _d, r=reports: r.append(m), list, device=CPU)
    halved, whole = runs["oom_above@2"], runs[""]
    assert [m["micro_batch"] for m in whole] == [4, 4]
    assert [m["micro_batch"] for m in halved] == [2, 2]
    assert [m["end_reason"] for m in halved] == ["", "max_epochs"]
    note = halved[-1]["restore_note"]
    assert note.count("CUDA out of memory") == 1 and "now runs as micro-batches of 2" in note
    for key in ("train_loss", "val_loss", "val_acc"):
        assert [m[key] for m in halved] == pytest.approx([m[key] for m in whole], rel=1e-4), key


def test_an_out_of_memory_error_at_every_size_ends_the_cross_validation_trial() -> None:
    """Reported with end_reason "oom" and the fold, not raised, as run_trial does."""
    reports: list[dict] = []
    cfg = _cfg(fault="oom@1")
    run_trial_cv(cfg, _data(folds=True), lambda m, _d: reports.append(m), list, device=CPU)
    (m,) = reports
    assert m["end_reason"] == "oom" and m["error"].startswith("fold 0: out of memory in epoch 1")
    assert "micro-batches of 2" in m["error"] and m["micro_batch"] == 2
    assert np.isnan(m["val_acc"]) and m["best_epoch"] == 0


def test_a_checkpoint_holding_more_than_weights_is_skipped_and_named_safely(tmp_path) -> None:
    """A retried trial still falls back to the older checkpoint; its note names the file, and
    never repeats torch's advice to load it with weights_only=False (issue #27, item 9)."""
    whole = Recorder(tmp_path / "whole")
    run_trial(_cfg(max_epochs=2), _data(), whole.report, whole.checkpoint, device=CPU)
    newest = whole.dirs[1]
    torch.save({"model": np.zeros(3)}, newest / checkpoints.LAST)  # unpickling it runs numpy
    t = setup_trial(_cfg(max_epochs=2), _data(), CPU)
    found = [LocalCheckpoint(str(newest)), LocalCheckpoint(str(whole.dirs[0]))]
    epoch, *_, note = checkpoints.restore(found, t.model, t.opt, CPU)
    assert epoch == 1 and f"checkpoint {newest} is unreadable (last.pt: holds more" in note
    assert "weights_only" not in note and "can still be loaded" not in note, note


def test_the_cross_validation_trial_restarts_from_an_unreadable_checkpoint_safely(
    tmp_path,
) -> None:
    saved: list[Path] = []

    def keep(metrics: dict[str, Any], directory: Path) -> None:
        shutil.copytree(directory, tmp_path / f"c{metrics['epoch']}")
        saved.append(tmp_path / f"c{metrics['epoch']}")

    run_trial_cv(_cfg(max_epochs=1), _data(folds=True), keep, list, device=CPU)
    torch.save({"folds": np.zeros(2)}, saved[0] / CV_STATE)
    reports: list[dict] = []
    resume = lambda: [LocalCheckpoint(str(saved[0]))]  # noqa: E731
    run_trial_cv(_cfg(max_epochs=1), _data(folds=True), lambda m, _d: reports.append(m), resume)
    note = reports[-1]["restore_note"]
    assert f"checkpoint {saved[0]} unreadable ({CV_STATE}: holds more than weights" in note
    assert "weights_only" not in note and "can still be loaded" not in note, note
