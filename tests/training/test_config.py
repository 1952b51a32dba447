"""A trial's config refuses numbers it cannot train with (issue #27 item 10): `lr=inf` once passed
TrainConfig and the preflight, and failed, or trained nonsense, inside every trial."""

from __future__ import annotations

from typing import Any

import pytest

from study.training.config import TrainConfig

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"lr": INF}, "config lr=inf: expected a finite number > 0"),
        ({"lr": NAN}, "config lr=nan: expected a finite number > 0"),
        ({"weight_decay": INF}, "config weight_decay=inf: expected a finite number >= 0"),
        ({"weight_decay": -0.1}, "config weight_decay=-0.1: expected a finite number >= 0"),
        ({"l2": NAN}, "config l2=nan: expected a finite number >= 0"),
        ({"momentum": 1.0}, "config momentum=1.0: expected a value in [0, 1)"),
        ({"momentum": NAN}, "config momentum=nan: expected a value in [0, 1)"),
        ({"optimizer": "sgd", "momentum": 0.0}, "config momentum=0.0: expected a value in (0, 1)"),
        ({"aug_strength": 1.5}, "config aug_strength=1.5: expected a value in [0, 1]"),
        ({"label_smoothing": INF}, "config label_smoothing=inf: expected a value in [0, 1)"),
        ({"warmup_epochs": -1}, "config warmup_epochs=-1: expected an integer >= 0"),
        ({"patience": -2}, "config patience=-2: expected an integer >= 0"),
        # model options: by the name the space returned them under
        ({"dropout": NAN}, "config dropout=nan: expected a finite number"),
        ({"backbone_lr_mult": INF}, "config backbone_lr_mult=inf: expected a finite number"),
    ],
)
def test_a_config_refuses_non_finite_and_out_of_range_numbers(
    given: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValueError) as e:
        TrainConfig.from_config({"model": "vanilla_cnn", **given})
    assert str(e.value).startswith(words), str(e.value)


def test_a_config_takes_the_edges_of_every_range() -> None:
    cfg = TrainConfig.from_config(
        {
            "model": "vanilla_cnn",
            "optimizer": "sgd",
            "momentum": 0.99,
            "weight_decay": 0.0,
            "l2": 0.0,
            "aug_strength": 1.0,
            "label_smoothing": 0.0,
            "warmup_epochs": 0,
            "dropout": 0.0,
            "suggested": {"lr": NAN},  # a record of the raw values: not trained with
        }
    )
    assert cfg.momentum == 0.99 and cfg.aug_strength == 1.0
    assert TrainConfig.from_config({"model": "vanilla_cnn", "momentum": 0.0}).momentum == 0.0
