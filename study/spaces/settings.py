"""What a study is besides its per-trial hyperparameters: `SpaceSettings`, the `SETTINGS` of each
file in search_spaces/. Its own module so that a space file imports it without importing the space
finder (study.spaces), which looks those files up."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from study.results.schema import EPOCH_COLUMNS

ROLES = ("scientific", "nuisance", "fixed")


SAMPLERS = ("tpe", "random", "grid", "cmaes")


# early stoppers, and how the report names each (study.tuning.schedulers.BUILDERS builds them,
# one entry each): "asha" (asynchronous successive halving), "hyperband" (synchronous HyperBand:
# trials wait at each rung for their bracket; its brackets' rungs follow from max_epochs and
# reduction_factor, not grace_period), "median" (median stopping rule), "pbt" (population-based
# training of the nuisance knobs study.tuning.schedulers.PBT_KNOBS; no Optuna feedback), "fifo"
# (none). Here, Ray-free, so a space's settings are checked without importing Ray.
SCHEDULER_NAMES = {
    "asha": "ASHA",
    "hyperband": "HyperBand",
    "median": "the median stopping rule",
    "pbt": "PBT",
    "fifo": "FIFO",
}
SCHEDULERS = tuple(SCHEDULER_NAMES)


# the one wording of a trial ended by its scheduler's decision (trials.parquet's status_reason,
# Optuna's end_reason, the console, the report)
STOPPED_EARLY = "stopped early by {}"


# "study": ASHA-stopped trials are PRUNED in Optuna; "stock": as Ray's OptunaSearch ships (they are
# COMPLETE with their truncated score), kept only to measure the difference (benchmarks/)
SEARCHERS = ("study", "stock")


# the smallest input the models' downsampling accepts, and a bound on decoded memory per image
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024


def stopped_early(scheduler: str | None = None) -> str:
    """'stopped early by ASHA'; 'by the scheduler' where the study's scheduler is unknown."""
    return STOPPED_EARLY.format(SCHEDULER_NAMES.get(scheduler or "", "the scheduler"))


def study_metrics() -> tuple[str, ...]:
    """Names a study may rank trials by: what the trainable measures each epoch
    (study.results.schema.EPOCH_COLUMNS less bookkeeping and the learning rate it is given)."""
    return tuple(
        c for c in EPOCH_COLUMNS if c not in ("trial_id", "epoch", "time", "lr", "micro_batch")
    )


@dataclass(frozen=True)
class SpaceSettings:
    """Everything about a study that is not a per-trial hyperparameter."""

    dataset: str
    description: str
    metric: str = "val_acc"
    mode: str = "max"
    max_epochs: int = 20
    grace_period: int = 2
    reduction_factor: int = 3
    num_samples: int = 20
    image_size: int = 112
    sampler: str = "tpe"
    scheduler: str = "asha"
    searcher: str = "study"
    top_k: int = 3  # best trials (by validation) evaluated on the test split
    # > 1: each trial's metric is its mean over this many folds of train+val (tiny data sets;
    # study.training.cv_trial), at K times the cost
    cv_folds: int = 0
    # tuning-playbook roles of the hyperparameters; names not listed are "nuisance"
    roles: dict[str, str] = field(default_factory=dict)
    # enqueued first, by raw suggest names (e.g. the seed's named variants)
    starting_points: tuple[dict[str, Any], ...] = ()
    # what --smoke-test changes (besides 2 trials x 2 epochs): tiny image size and width
    smoke: dict[str, Any] = field(default_factory=lambda: {"image_size": 32})

    def __post_init__(self) -> None:
        for name, allowed in (
            ("sampler", SAMPLERS),
            ("scheduler", SCHEDULERS),
            ("searcher", SEARCHERS),
            ("mode", ("max", "min")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"SpaceSettings.{name}={getattr(self, name)!r}: expected one of "
                    f"{', '.join(allowed)}"
                )
        bad = {k: v for k, v in self.roles.items() if v not in ROLES}
        if bad:
            raise ValueError(f"SpaceSettings.roles {bad}: roles must be one of {', '.join(ROLES)}")
        # ASHA asserts on these only after Ray has started (and after study.json is written)
        for name, low in (
            ("max_epochs", 1),
            ("grace_period", 1),
            ("reduction_factor", 2),
            ("num_samples", 1),
            ("top_k", 1),
            ("image_size", MIN_IMAGE_SIZE),
            ("cv_folds", 0),  # (2.5 or inf folds once passed: it was compared, never typed)
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"SpaceSettings.{name}={value!r}: expected an integer >= {low}")
        if self.image_size > MAX_IMAGE_SIZE:
            raise ValueError(
                f"SpaceSettings.image_size={self.image_size}: expected at most {MAX_IMAGE_SIZE} "
                "(every image of the data set is decoded to this size in memory)"
            )
        metrics = study_metrics()
        if self.metric not in metrics:
            # a metric the trainable does not report fails every trial with a KeyError
            raise ValueError(
                f"SpaceSettings.metric={self.metric!r}: expected one of {', '.join(metrics)} "
                "(what each trial reports per epoch)"
            )
        if self.cv_folds < 0 or self.cv_folds == 1:
            raise ValueError(f"SpaceSettings.cv_folds={self.cv_folds}: expected 0 (off) or >= 2")
        if self.grace_period > self.max_epochs:
            raise ValueError(
                f"SpaceSettings.grace_period={self.grace_period} exceeds "
                f"max_epochs={self.max_epochs}"
            )
        self._check_scheduler()

    def _check_scheduler(self) -> None:
        """Options each scheduler needs, checked here: Ray asserts on them only after it started."""
        if self.scheduler == "pbt":
            if self.num_samples < 2:
                raise ValueError(
                    f"SpaceSettings.num_samples={self.num_samples}: scheduler 'pbt' needs a "
                    "population of at least 2 trials"
                )
            if self.grace_period >= self.max_epochs:
                raise ValueError(
                    f"SpaceSettings.grace_period={self.grace_period}: scheduler 'pbt' perturbs "
                    f"every grace_period epochs, so it must be below max_epochs={self.max_epochs}"
                )
            if self.sampler not in ("random", "grid"):
                # PBT replaces a trial's weights and knobs mid-run: its score is no answer to the
                # configuration a model-based sampler proposed, so Ray refuses any searcher
                raise ValueError(
                    f"SpaceSettings.sampler={self.sampler!r}: scheduler 'pbt' draws its "
                    "population once, up front, with sampler 'random' or 'grid'"
                )

    def override(self, **changes: Any) -> SpaceSettings:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; expected {sorted(known)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
