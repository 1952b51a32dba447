"""A batch size that fits: on CUDA out-of-memory the trainable halves its micro-batch, retries the
same step and accumulates gradients, so the trial still trains with the batch size it was given.

The OOMs are injected (fault `oom_above@N`: a card that fits N images), so this runs on CPU; the
GPU check (benchmarks/gpu_check.py, phase batch_fit) provokes real ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.data import SplitArrays
from study.training import faults
from study.training.config import TrainConfig
from study.training.feed import BatchFit
from study.training.steps import TrialData
from study.training.trial import Training, setup_trial

CPU = torch.device("cpu")


def _data(n: int = 72, size: int = 32, k: int = 3) -> TrialData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    labels = (np.arange(n) * 7 % k).astype(np.int64)  # unbalanced within a batch
    labels[:10] = 0  # and overall, so class weights differ
    split = SplitArrays(images, labels, [f"img{i}" for i in range(n)])
    return TrialData(split, split, [str(i) for i in range(k)])


def _setup(batch_size: int, micro: int = 0, fault: str = "", **config) -> Training:
    """A batch-norm-free CNN (batch norm statistics do depend on the micro-batch) as a trial
    sets it up, with its micro-batch set to `micro` (0: the whole batch)."""
    cfg = TrainConfig.from_config(
        {
            "model": "vanilla_cnn",
            "width": 4,
            "depth": 2,
            "batch_norm": False,
            "dropout": 0.0,
            "image_size": 32,
            "batch_size": batch_size,
            "seed": 3,
            "fault": fault,
            **config,
        }
    )
    t = setup_trial(cfg, _data(), CPU)
    t.fit = BatchFit(batch_size, micro=micro)
    return t


def _train(t: Training, epochs: int = 2) -> tuple[list, list]:
    """The per-epoch (loss, acc) and the final parameters."""
    data, out = _data(), []
    for epoch in range(epochs):
        loss, acc, _ = t.train(data, epoch, faults=faults.parse(t.cfg.fault))
        out.append((loss, acc))
    return out, [p.detach().clone() for p in t.model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"class_weights": True, "l2": 1e-3},
        {"label_smoothing": 0.1, "class_weights": True},
        {"head_output": "sigmoid", "class_weights": True},
    ],
    ids=["plain", "weighted+l2", "smoothed+weighted", "sigmoid+weighted"],
)
def test_micro_batches_train_like_the_whole_batch(config) -> None:
    """Gradient accumulation over 4 micro-batches of 8 = one step on the batch of 32."""
    whole_hist, whole = _train(_setup(32, aug_strength=0.5, **config))
    micro_hist, micro = _train(_setup(32, 8, aug_strength=0.5, **config))
    _same(whole, micro)
    np.testing.assert_allclose(whole_hist, micro_hist, rtol=1e-4)
    _, start = _train(_setup(32, **config), epochs=0)  # the same seed, untrained
    assert any(not torch.equal(p, q) for p, q in zip(start, whole, strict=True))


def test_no_micro_batch_of_one_image() -> None:
    """Batch 9 in micro-batches of 4 is 4 + 5, not 4 + 4 + 1: batch norm in a dense head cannot
    train on one image (it raises), so the last image joins the previous micro-batch."""
    t = _setup(9, 4, batch_norm=True, head_dense=[8])
    sizes: list[int] = []  # the images of every forward pass of the epoch
    t.model.register_forward_pre_hook(lambda _, args: sizes.append(len(args[0])))
    hist, _ = _train(t, epochs=1)
    # 72 images: 8 batches of 9, each as micro-batches of 4 and 5
    assert sizes == [4, 5] * 8 and np.isfinite(hist[0][0])


def test_out_of_memory_halves_the_micro_batch_and_changes_nothing() -> None:
    t = _setup(32, fault="oom_above@10", aug_strength=0.5)
    hist, params = _train(t)
    fit = t.fit
    assert fit.micro == 8  # 32 -> 16 -> 8, then it fits
    assert len(fit.notes) == 2 and "micro-batch 32" in fit.notes[0]
    assert "micro-batches of 8" in fit.notes[1]
    # the retried steps saw the same augmented images and the same batches
    ref_hist, ref = _train(_setup(32, aug_strength=0.5))
    _same(params, ref)
    np.testing.assert_allclose(hist, ref_hist, rtol=1e-4)


def test_out_of_memory_at_every_size_is_reported_not_retried_forever() -> None:
    t = _setup(32, fault="oom@1")
    with pytest.raises(torch.OutOfMemoryError, match="epoch 1 even with micro-batches of 2"):
        _train(t)
    assert t.fit.micro == 2 and len(t.fit.notes) == 4  # 32 -> 16 -> 8 -> 4 -> 2


def test_unknown_fault_names_the_option() -> None:
    with pytest.raises(ValueError, match="oom_above@N"):
        faults.parse("oom_below@3")
