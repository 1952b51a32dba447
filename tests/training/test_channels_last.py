"""The channels_last trial option: NHWC weights and inputs on any device when a space asks for it
(the demo does: ~30 % cheaper epochs for its plain CNN on CPU), CUDA only by default."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from study.data import Augment, AugmentConfig
from study.data.augment import AugmentDraw
from study.training.config import TrainConfig
from study.training.steps import build_model, train_step

CPU = torch.device("cpu")
CNN = {"model": "vanilla_cnn", "depth": 2, "width": 4, "batch_norm": True, "head_dense": []}


def _first_conv(model: torch.nn.Module) -> torch.Tensor:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight


@pytest.mark.parametrize(("value", "nhwc"), [("auto", False), (False, False), (True, True)])
def test_channels_last_on_cpu_only_when_asked(value, nhwc: bool) -> None:
    cfg = TrainConfig.from_config({**CNN, "channels_last": value})
    assert "channels_last" not in cfg.model_options  # a training option, not a model's
    w = _first_conv(build_model(cfg, 7, CPU))
    assert w.is_contiguous(memory_format=torch.channels_last) is nhwc
    assert w.is_contiguous() is not nhwc


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_channels_last_rejects_other_values(bad) -> None:
    with pytest.raises(ValueError, match=r"config channels_last=.*true, false or 'auto'"):
        TrainConfig.from_config({**CNN, "channels_last": bad})


def test_channels_last_trains_the_same_model() -> None:
    """One step in either layout from the same weights: same loss and same gradients (to float
    rounding), so the option changes cost, not what a trial learns."""
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(6) % 7
    aug = Augment(AugmentConfig(flip=0.0))
    draw = AugmentDraw(*(torch.zeros(6) for _ in range(5)), None)
    grads, losses = [], []
    for value in (False, True):
        cfg = TrainConfig.from_config({**CNN, "channels_last": value})
        torch.manual_seed(0)
        model = build_model(cfg, 7, CPU)
        scaler = torch.amp.GradScaler(enabled=False)
        loss, _ = train_step(model, x, y, aug, draw, cfg, None, scaler, 6, None)
        losses.append(float(loss))
        grads.append(_first_conv(model).grad.contiguous())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert F.cosine_similarity(grads[0].flatten(), grads[1].flatten(), 0) > 0.9999
