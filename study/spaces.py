"""Search spaces: `search_spaces/<name>.py` files, each a define-by-run `space(trial) -> dict` and a
`SETTINGS = SpaceSettings(...)`, found by name."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import pkgutil
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna

from study.settings import SpaceSettings

# an int parameter with at most this many values is a choice the cover must visit (0/1 switches,
# 0..2 head layers); wider ranges are numeric axes, sampled like floats
MAX_INT_CHOICES = 8


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
    # found, not imported: every space file imports study.settings, and importing the package
    # from here would close a loop study.spaces -> search_spaces -> study
    spec = importlib.util.find_spec("search_spaces")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("search_spaces: the folder of shipped spaces is not importable")
    return Path(next(iter(spec.submodule_search_locations)))


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
        with _import_errors(str(path)):
            spec.loader.exec_module(module)
        name = path.stem
    else:
        if name not in list_spaces():
            raise ValueError(
                f"unknown space {name!r}; available: {', '.join(list_spaces())} "
                "(or a path to your own .py file)"
            )
        with _import_errors(str(_package_dir() / f"{name}.py")):
            module = importlib.import_module(f"search_spaces.{name}")
    fn, settings = getattr(module, "space", None), getattr(module, "SETTINGS", None)
    if not callable(fn) or not isinstance(settings, SpaceSettings):
        raise ValueError(
            f"space {name!r} ({module.__file__}) must define space(trial) -> dict "
            "and SETTINGS = SpaceSettings(...)"
        )
    return Space(name, fn, settings, module)


@contextlib.contextmanager
def _import_errors(path: str) -> Iterator[None]:
    """A space file that cannot be imported: one line naming the file and line, not a traceback."""
    try:
        yield
    except SyntaxError as e:
        where = f"{e.filename or path}, line {e.lineno}"
        raise ValueError(f"space file {where}: syntax error: {e.msg}") from e
    except Exception as e:  # ImportError, NameError, a bad SpaceSettings, ...: any import failure
        # the deepest frame in the space file itself (the error may come from what it imports)
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        where = f"{path}, line {lines[-1]}" if lines else path
        raise ValueError(f"space file {where}: {one_line(e)}") from e


def one_line(e: BaseException) -> str:
    """An exception as one line: its type and its message, newlines folded."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


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


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """No "A new study created in memory" lines for the throw-away studies below."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


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


class SpaceFunction:
    """The define-by-run function handed to Optuna: a space, with --smoke-test shrinking applied.

    Ray pickles the searcher (and so this) into the experiment state for resuming, so it holds
    only the space's reference (a name or a file path) and loads the function on first use.
    """

    def __init__(self, ref: str, overrides: dict[str, Any] | None = None):
        self.ref = str(Path(ref).resolve()) if ref.endswith(".py") else ref
        self.overrides = dict(overrides or {})
        self._space: Space | None = None

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        cfg = self.space.fn(trial)
        if not isinstance(cfg, dict):
            raise TypeError(f"space(trial) must return a dict, got {cfg!r}")
        return {**cfg, **{k: v for k, v in self.overrides.items() if k in cfg}}

    @property
    def space(self) -> Space:
        if self._space is None:
            self._space = load_space(self.ref)
        return self._space

    def __getstate__(self) -> dict[str, Any]:
        return {"ref": self.ref, "overrides": self.overrides}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["ref"], state["overrides"])
