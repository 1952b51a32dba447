"""Search spaces: `search_spaces/<name>.py` files, each a define-by-run `space(trial) -> dict` and a
`SETTINGS = SpaceSettings(...)`, found by name."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna

ROLES = ("scientific", "nuisance", "fixed")
SAMPLERS = ("tpe", "random", "grid", "cmaes")
SCHEDULERS = ("asha", "fifo")
# "study": ASHA-stopped trials are PRUNED in Optuna; "stock": as Ray's OptunaSearch ships (they are
# COMPLETE with their truncated score), kept only to measure the difference (benchmarks/)
SEARCHERS = ("study", "stock")


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
    # study.cv_trial), at K times the cost
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
        if self.cv_folds < 0 or self.cv_folds == 1:
            raise ValueError(f"SpaceSettings.cv_folds={self.cv_folds}: expected 0 (off) or >= 2")
        if self.grace_period > self.max_epochs:
            raise ValueError(
                f"SpaceSettings.grace_period={self.grace_period} exceeds "
                f"max_epochs={self.max_epochs}"
            )

    def override(self, **changes: Any) -> SpaceSettings:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; expected {sorted(known)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Space:
    name: str
    fn: Callable[[optuna.Trial], dict[str, Any]]
    settings: SpaceSettings
    module: ModuleType

    @property
    def summary(self) -> str:
        return f"{self.name:20s} [{self.settings.dataset}] {self.settings.description}"


def _package_dir() -> Path:
    import search_spaces

    return Path(search_spaces.__file__).parent


def list_spaces() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(_package_dir())]) if not m.name.startswith("_")
    )


def load_space(name: str) -> Space:
    """A space by name (a file in search_spaces/) or by path to a .py file of your own."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"--space {name}: no such file")
        spec = importlib.util.spec_from_file_location(f"user_space_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        name = path.stem
    else:
        if name not in list_spaces():
            raise ValueError(
                f"unknown space {name!r}; available: {', '.join(list_spaces())} "
                "(or a path to your own .py file)"
            )
        module = importlib.import_module(f"search_spaces.{name}")
    fn, settings = getattr(module, "space", None), getattr(module, "SETTINGS", None)
    if not callable(fn) or not isinstance(settings, SpaceSettings):
        raise ValueError(
            f"space {name!r} ({module.__file__}) must define space(trial) -> dict "
            "and SETTINGS = SpaceSettings(...)"
        )
    return Space(name, fn, settings, module)


def describe_hyperparameters(space: Space, samples: int = 64, seed: int = 0) -> dict[str, dict]:
    """Distributions of every suggest call the space can make, with its role.

    Conditional parameters only appear on some branches, so the space is run on several random
    trials of a throw-away in-memory study and the distributions are merged.
    """
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out: dict[str, dict] = {}
    for _ in range(samples):
        trial = study.ask()
        space.fn(trial)
        for pname, dist in trial.distributions.items():
            out.setdefault(
                pname, _describe(dist) | {"role": space.settings.roles.get(pname, "nuisance")}
            )
        study.tell(trial, 0.0)
    return out


def _describe(dist: optuna.distributions.BaseDistribution) -> dict[str, Any]:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return {"kind": "categorical", "choices": list(dist.choices)}
    kind = "int" if isinstance(dist, optuna.distributions.IntDistribution) else "float"
    return {"kind": kind, "low": dist.low, "high": dist.high, "log": dist.log}


class SpaceFunction:
    """The define-by-run function handed to Optuna: a space, with --smoke-test shrinking applied.

    Ray pickles the searcher (and so this) into the experiment state for resuming, so it holds
    only the space's reference (a name or a file path) and loads the function on first use.
    """

    def __init__(self, ref: str, overrides: dict[str, Any] | None = None):
        self.ref = str(Path(ref).resolve()) if ref.endswith(".py") else ref
        self.overrides = dict(overrides or {})
        self._fn: Callable[[optuna.Trial], dict[str, Any]] | None = None

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        if self._fn is None:
            self._fn = load_space(self.ref).fn
        cfg = self._fn(trial)
        return {**cfg, **{k: v for k, v in self.overrides.items() if k in cfg}}

    def __getstate__(self) -> dict[str, Any]:
        return {"ref": self.ref, "overrides": self.overrides}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["ref"], state["overrides"])
