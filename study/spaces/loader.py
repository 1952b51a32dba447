"""Search spaces: `search_spaces/<name>.py` files, each a define-by-run `space(trial) -> dict` and a
`SETTINGS = SpaceSettings(...)`, found by name."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna

from study.spaces.settings import SpaceSettings


@dataclass(frozen=True)
class Space:
    name: str
    fn: Callable[[optuna.Trial], dict[str, Any]]
    settings: SpaceSettings
    module: ModuleType

    @property
    def summary(self) -> str:
        return f"{self.name:20s} [{self.settings.dataset}] {self.settings.description}"


def _spaces_package() -> tuple[str, Path]:
    """The package the shipped spaces import as, and its folder. In a checkout they are the
    top-level folder `search_spaces/` beside `study/` (the folder users edit); an installed wheel
    has them as `study.search_spaces` (setup.py), so that no top-level `search_spaces` lands in
    site-packages. A checkout's folder wins only when it is the one beside the `study` that runs:
    a `search_spaces` of another project on sys.path is never taken for ours."""
    # found, not imported: every space file imports study.spaces.settings, and importing the package
    # from here would close a loop study.spaces -> search_spaces -> study
    beside = Path(__file__).resolve().parents[2] / "search_spaces"
    for name in ("search_spaces", "study.search_spaces"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations)))
        if name == "study.search_spaces" or folder.resolve() == beside:
            return name, folder
    raise ModuleNotFoundError(
        f"the shipped spaces are not importable: neither {beside} (a checkout) nor "
        "study.search_spaces (an install) was found"
    )


def _package_dir() -> Path:
    return _spaces_package()[1]


def list_spaces() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(_package_dir())]) if not m.name.startswith("_")
    )


def space_file(ref: str) -> Path:
    """The file a space reference names (`SpaceFunction.ref`): a user's .py path, or a shipped
    space's file under search_spaces/."""
    return Path(ref) if ref.endswith(".py") else _package_dir() / f"{ref}.py"


def space_sha256(ref: str) -> str:
    """sha256 of the bytes of the space's file: study.json records it when a study starts, and
    --resume refuses a file changed since (its trials would sample another space)."""
    return hashlib.sha256(space_file(ref).read_bytes()).hexdigest()


def load_space(name: str) -> Space:
    """A space by name (a file in search_spaces/) or by path to a .py file of your own."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"--space {name}: no such file")
        # a module of the shipped spaces' package, so that a copy of a shipped space keeps its
        # relative imports of the helpers beside it (`from . import _axes`)
        package = importlib.import_module(_spaces_package()[0]).__name__
        spec = importlib.util.spec_from_file_location(f"{package}.user_space_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        # nothing written into the user's folder: Python would cache the file's bytecode in a
        # __pycache__ beside it
        writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            with _import_errors(str(path)):
                spec.loader.exec_module(module)
        finally:
            sys.dont_write_bytecode = writes_bytecode
        name = path.stem
    else:
        if name not in list_spaces():
            raise ValueError(
                f"unknown space {name!r}; available: {', '.join(list_spaces())} "
                "(or a path to your own .py file)"
            )
        package, folder = _spaces_package()
        with _import_errors(str(folder / f"{name}.py")):
            module = importlib.import_module(f"{package}.{name}")
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


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """No "A new study created in memory" lines for the throw-away studies below."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


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
