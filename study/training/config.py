"""The typed view of a trial's config dict: training options; everything else goes to the model.

A trial reads nothing but its config (plus the prepared data handed over once), so every knob that
changes a result is in here, recorded in trials.parquet, and reproducible from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from study.spaces.settings import MIN_IMAGE_SIZE

OPTIMIZERS = ("adam", "adamw", "sgd")


_TYPES = {"int": int, "float": int | float, "str": str, "bool": bool}  # annotation -> accepted


SCHEDULES = ("cosine", "constant", "step")


@dataclass(frozen=True)
class TrainConfig:
    model: str
    max_epochs: int = 10
    # a record, read by no trial code: the size the driver decoded the data at
    # (SpaceSettings.image_size, which a space cannot override: study.run.preflight)
    image_size: int = 64
    seed: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # decoupled (AdamW) / coupled (SGD, Adam) as the optimiser defines
    l2: float = 0.0  # explicit Keras-style kernel penalty: loss += l2 * sum(w^2)
    batch_size: int = 32
    lr_schedule: str = "cosine"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    class_weights: bool = False  # weight the loss by inverse class frequency (manga is imbalanced)
    aug_strength: float = 0.0  # 0..1, see study.data.AugmentConfig.from_strength
    patience: int = 0  # early stopping on the metric, as the seed did; 0 = off
    metric: str = "val_acc"
    mode: str = "max"
    # torch.compile: True, False, or "auto" (on CUDA when it pays back within the trial's
    # remaining epochs; off on CPU); the decision is reported per epoch (study.training.compiling)
    compile: bool | str = "auto"
    num_threads: int = 0  # torch threads per trial; 0 = leave torch's default
    # channels-last (NHWC) weights and inputs: True, False, or "auto" (on CUDA only). On CPU it
    # cut a 5-block plain CNN's epoch at 64 px by ~30 % (the demo sets it); it is off there by
    # default because no other model was measured with it
    channels_last: bool | str = "auto"
    # warm start: STUDY_DIR[:TRIAL_ID] (or STUDY_DIR:final), weights of another study's model
    # (study.training.transfer); freeze / backbone_lr_mult apply to them as to ImageNet weights
    init_from: str = ""
    # where the cuda OOM / NaN fault tests inject failures (tests only; never set by spaces)
    fault: str = ""
    # the raw suggest_* values behind this config, recorded for the report; training ignores them
    suggested: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"config {name}={getattr(self, name)!r}: expected {expected}")

        for f in fields(self):  # "lr": "fast" from a space: name the field, not a TypeError
            want, value = _TYPES.get(f.type), getattr(self, f.name)
            if want and not (isinstance(value, want) and (want is bool or type(value) is not bool)):
                raise bad(f.name, f"a value of type {f.type}")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise bad("lr_schedule", f"one of {', '.join(SCHEDULES)}")
        # inf or nan trains for minutes before the loss says so (an inf lr passes torch's own
        # checks): refused here, so the preflight's covering configs name the key and value
        for name, ok, expected in _RANGES:
            if not (math.isfinite(getattr(self, name)) and ok(getattr(self, name))):
                raise bad(name, expected)
        # the rest: model options by the name the space gave them (`suggested` is only a record)
        given = {k: v for k, v in self.__dict__.items() if k not in ("suggested", "model_options")}
        for name, value in _numbers({**given, **self.model_options}):
            if not math.isfinite(value):
                raise ValueError(f"config {name}={value!r}: expected a finite number")
        if self.optimizer == "sgd" and self.momentum == 0:
            # this SGD is Nesterov's (study.training.steps): torch refuses it without momentum
            raise bad("momentum", "a value in (0, 1) with optimizer 'sgd' (Nesterov momentum)")
        if self.image_size < MIN_IMAGE_SIZE:  # what SpaceSettings accepts, not a stricter bound
            raise bad("image_size", f"an integer >= {MIN_IMAGE_SIZE}")
        if self.mode not in ("max", "min"):
            raise bad("mode", "'max' or 'min'")
        for name in ("compile", "channels_last"):
            value = getattr(self, name)
            if not (isinstance(value, bool) or value == "auto"):
                raise bad(name, "true, false or 'auto'")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainConfig:
        """Training keys become fields; all other keys are model options (create_model rejects
        unknown ones, so a typo in a space is an error, not a silently ignored knob)."""
        names = {f.name for f in fields(cls)} - {"model_options"}
        if "model" not in config:
            raise ValueError("config has no 'model' key (every space must set the model name)")
        train = {k: v for k, v in config.items() if k in names}
        options = {k: v for k, v in config.items() if k not in names}
        return cls(**train, model_options=options)


# field -> whether a value is in range, and the range in the wording of the error
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("lr", lambda v: v > 0, "a finite number > 0"),
    ("batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("max_epochs", lambda v: v >= 1, "an integer >= 1"),
    ("momentum", lambda v: 0 <= v < 1, "a value in [0, 1)"),
    ("weight_decay", lambda v: v >= 0, "a finite number >= 0"),
    ("l2", lambda v: v >= 0, "a finite number >= 0"),
    ("label_smoothing", lambda v: 0 <= v < 1, "a value in [0, 1)"),
    ("aug_strength", lambda v: 0 <= v <= 1, "a value in [0, 1]"),  # AugmentConfig's range
    ("warmup_epochs", lambda v: v >= 0, "an integer >= 0"),
    ("patience", lambda v: v >= 0, "an integer >= 0"),
    ("num_threads", lambda v: v >= 0, "an integer >= 0"),
)


def _numbers(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(name, value) of every float in `values`, nested ones named by their path
    ('head_dense[1]', 'a.b')."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, float):
            yield name, value
        elif isinstance(value, dict):
            yield from _numbers(value, f"{name}.")
        elif isinstance(value, list | tuple):
            yield from _numbers({f"{key}[{i}]": v for i, v in enumerate(value)}, prefix)
