"""The cover finder: a few configs of a space that together take every categorical choice at
least once, so tests and `--smoke-test` exercise every branch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from study.spaces.loader import Space, one_line, quiet_optuna
from study.spaces.settings import SpaceSettings

# an int parameter with at most this many values is a choice the cover must visit (0/1 switches,
# 0..2 head layers); wider ranges are numeric axes, sampled like floats
MAX_INT_CHOICES = 8


class SpaceError(ValueError):
    """The space function failed (or returned no dict) for these raw params."""

    def __init__(self, params: dict[str, Any], reason: str):
        super().__init__(f"with params {params}: {reason}")
        self.params, self.reason = params, reason


@dataclass(frozen=True)
class Cover:
    """Trials that visit every choice of the space: raw params (for `Study.enqueue_trial`), the
    config the space returned for each, and every distribution they met."""

    params: list[dict[str, Any]]
    configs: list[dict[str, Any]]
    distributions: dict[str, optuna.distributions.BaseDistribution]


def choices(dist: optuna.distributions.BaseDistribution) -> list[Any] | None:
    """The values a cover must visit: a categorical's choices, a small int range's values."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        values = list(range(dist.low, dist.high + 1, dist.step))
        return values if len(values) <= MAX_INT_CHOICES else None
    return None


def _key(value: Any) -> str:
    # JSON tells 1 from True from 1.0 (== and hash do not), so each is a choice of its own
    return json.dumps(value)


def cover_space(
    fn: Callable[[optuna.Trial], dict[str, Any]],
    settings: SpaceSettings | None = None,
    seed: int = 0,
    max_trials: int = 200,
) -> Cover:
    """Few trials in which every (parameter, choice) pair the space can reach appears at least
    once, conditional parameters included: pure Optuna, no training, well under a second.

    Greedy: after the settings' starting points (or one random trial), each new trial starts
    from the observed trial on which most still-uncovered parameters were suggested and sets each
    of them to one of its uncovered choices; parameters met on the way join the set to cover.
    About max(#choices) trials, not their product. If such a trial covers nothing new (a change
    switched a branch off), one pair is set on a trial where its parameter was suggested, which
    reaches it for any space that depends on its params only.
    """
    with quiet_optuna():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    params: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    covered: set[tuple[str, str]] = set()

    def run(fixed: dict[str, Any] | None) -> bool:
        """Ask one trial with these fixed params; whether it covered a new pair."""
        before, known = set(wanted()), set(dists)
        if fixed is not None:
            study.enqueue_trial(fixed)
        trial = study.ask()
        try:
            cfg = fn(trial)
        except Exception as e:  # anything the space raises: one line naming the params
            raise SpaceError(trial.params, one_line(e)) from e
        if not isinstance(cfg, dict):
            raise SpaceError(trial.params, f"space(trial) returned {cfg!r}, expected a dict")
        study.tell(trial, 0.0)
        params.append(dict(trial.params))
        configs.append(cfg)
        dists.update(trial.distributions)
        covered.update((p, _key(v)) for p, v in trial.params.items())
        return bool(before - set(wanted())) or not set(dists) <= known

    def wanted() -> dict[tuple[str, str], tuple[str, Any]]:
        return {
            (p, _key(c)): (p, c)
            for p, dist in dists.items()
            for c in choices(dist) or []
            if (p, _key(c)) not in covered
        }

    for point in settings.starting_points if settings else ():
        run(dict(point))
    if not params:
        run(None)
    while todo := wanted():
        if len(params) >= max_trials:
            p, c = next(iter(todo.values()))
            raise ValueError(
                f"could not cover the space in {max_trials} trials: parameter {p!r} never "
                f"took the choice {c!r} (does the space depend on more than its params?)"
            )
        first: dict[str, Any] = {}
        for p, c in todo.values():
            first.setdefault(p, c)
        base = max(params, key=lambda seen: sum(p in seen for p in first))
        if not run({**base, **first}):
            p, c = next(iter(todo.values()))
            run({**next(seen for seen in params if p in seen), p: c})
    return Cover(params, configs, dists)


def covering_params(
    fn: Callable[[optuna.Trial], dict[str, Any]], settings: SpaceSettings | None = None
) -> list[dict[str, Any]]:
    """Raw params of trials that together take every categorical choice of the space (see
    `cover_space`): enqueue them to run each choice at least once."""
    return cover_space(fn, settings).params


def describe_hyperparameters(space: Space, samples: int = 64, seed: int = 0) -> dict[str, dict]:
    """Distributions of every suggest call the space can make, with its role.

    Conditional parameters only appear on some branches, so the space is run on the covering
    trials (every categorical choice) and on several random ones, and the distributions merged.
    """
    cover = cover_space(space.fn, space.settings, seed=seed)
    dists = dict(cover.distributions)
    with quiet_optuna():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(samples):
        trial = study.ask()
        space.fn(trial)
        for pname, dist in trial.distributions.items():
            dists.setdefault(pname, dist)
        study.tell(trial, 0.0)
    return {
        pname: describe(dist) | {"role": space.settings.roles.get(pname, "nuisance")}
        for pname, dist in dists.items()
    }


def describe(dist: optuna.distributions.BaseDistribution) -> dict[str, Any]:
    """A distribution as study.json records it."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return {"kind": "categorical", "choices": list(dist.choices)}
    kind = "int" if isinstance(dist, optuna.distributions.IntDistribution) else "float"
    return {"kind": kind, "low": dist.low, "high": dist.high, "log": dist.log}
