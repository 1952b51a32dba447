"""One registry for every model: names → (builder, typed option dataclass, description).

Options arrive as plain JSON values from search-space configs, so each family declares them as a
dataclass; :func:`parse_options` rejects unknown names and wrong types before anything is built.

Torch-free, like timm's registry of pretrained configs: a builder may be registered as a
``"module:function"`` string, imported on the first :func:`create_model`, so listing models and
checking their options (``study models --list``, ``--help``, the report) never imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from torch import nn

# option values checked here without importing torch; study.models.layers maps the activation
# names to modules (a test keeps the two lists equal)
ACTIVATION_NAMES = ("relu", "leaky_relu", "elu", "gelu", "silu")
HEAD_OUTPUTS = ("softmax", "sigmoid")
INITS = ("torch", "glorot", "kaiming")
# what a model without a timm pretrained_cfg is fed: the decoded-image cache's historic resize
DEFAULT_INTERPOLATION = "bicubic"


class OptionError(ValueError):
    """A bad model option; the message names the option and what is allowed."""


def require(ok: bool, option: str, value: Any, allowed: str) -> None:
    if not ok:
        raise OptionError(f"option {option!r}={value!r} is invalid; expected {allowed}")


@dataclass
class HeadOptions:
    """Options every family shares: the seed's classifier head (and BN for the model's own
    layers). Subclasses override defaults and add their own fields."""

    head_dense: list[int] = field(default_factory=lambda: [64])
    activation: str = "relu"
    dropout: float = 0.4
    head_output: str = "softmax"
    batch_norm: bool = False
    # how the layers a family builds itself (never pretrained weights) are initialised:
    # "torch" = PyTorch's defaults, "glorot" = Keras' (the seed study's), see layers.init_weights
    init: str = "torch"

    def __post_init__(self) -> None:
        require(self.init in INITS, "init", self.init, one_of(INITS))
        require(
            all(w >= 1 for w in self.head_dense),
            "head_dense",
            self.head_dense,
            "a list of positive widths ([] for a linear head)",
        )
        require(
            self.activation in ACTIVATION_NAMES,
            "activation",
            self.activation,
            one_of(ACTIVATION_NAMES),
        )
        require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "a float in [0, 1)")
        require(
            self.head_output in HEAD_OUTPUTS, "head_output", self.head_output, one_of(HEAD_OUTPUTS)
        )


def one_of(choices: Any) -> str:
    return "one of " + ", ".join(repr(c) for c in choices)


Builder = Callable[[int, Any], "nn.Module"]


def resolve(target: Callable | str) -> Callable:
    """A callable, or the one a ``"package.module:attribute"`` string names (imported now)."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Builder | str  # a "module:function" string is imported on the first build
    options: type[HeadOptions]
    description: str
    defaults: Mapping[str, Any]
    # the timm architecture whose pretrained_cfg says how inputs are resized and normalised
    timm_arch: str | None = None
    # checks the local weights file that `pretrained` (True or a path) names, without building
    # the model: ``check(name, options)`` raises one line naming the file or the package to
    # install (study.run's pre-flight calls it before Ray starts, see :func:`check_weights`)
    weights_check: Callable[[str, Any], None] | str | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    options: type[HeadOptions],
    description: str,
    *,
    timm_arch: str | None = None,
    weights_check: Callable[[str, Any], None] | str | None = None,
    **defaults: Any,
) -> Callable[[Builder | str], Builder | str]:
    """Decorator registering ``builder(num_classes, opts) -> nn.Module`` under ``name``; the
    builder may be a ``"module:function"`` string, imported when the model is first built.
    ``weights_check(name, opts)``: see :attr:`ModelEntry.weights_check`.

    Stack it to register variants of one builder that differ only in default options (timm's
    per-variant functions, with the variant's options checked here, at import time)."""

    def decorate(builder: Builder | str) -> Builder | str:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        entry = ModelEntry(
            name, builder, options, description, dict(defaults), timm_arch, weights_check
        )
        parse_options(entry, {})  # a variant with bad defaults fails when it is registered
        _REGISTRY[name] = entry
        return builder

    return decorate


# prefix -> its resolver, or the "module:function" string naming it (imported on first use)
_PREFIX_RESOLVERS: dict[str, Callable[[str], ModelEntry] | str] = {}


def register_prefix(prefix: str, resolver: Callable[[str], ModelEntry] | str) -> None:
    _PREFIX_RESOLVERS[prefix] = resolver


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob ``pattern``, sorted. Any ``timm/<arch>`` also works
    in :func:`create_model` without being listed."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    if name in _REGISTRY:
        return _REGISTRY[name]
    # name prefixes resolved on demand ("timm/<arch>"): too many names to register one by one
    for prefix, resolver in _PREFIX_RESOLVERS.items():
        if name.startswith(prefix):
            return resolve(resolver)(name)
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(
        f"unknown model {name!r}{hint}; available: {', '.join(list_models())}, "
        f"or {', '.join(p + '<name>' for p in _PREFIX_RESOLVERS)}"
    )


def model_info(name: str) -> dict[str, Any]:
    """Name, one-line description and the full default options of a model."""
    entry = get_entry(name)
    return {
        "name": name,
        "description": entry.description,
        "options": dataclasses.asdict(parse_options(entry, {})),
    }


def input_interpolation(model: str | nn.Module) -> str:
    """How a model wants its inputs resized ("bicubic", "bilinear", ...): its timm backbone's
    ``pretrained_cfg``. Given a name, read from the config without building anything (imports
    timm for a timm backbone only); given a built model, what it records next to its mean/std
    (a ``torch.compile`` wrapper is looked through). Other models: the default."""
    if not isinstance(model, str):
        model = getattr(model, "_orig_mod", model)
        return getattr(model, "input_interpolation", DEFAULT_INTERPOLATION)
    entry = get_entry(model)
    if entry.timm_arch is None:
        return DEFAULT_INTERPOLATION
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(entry.timm_arch)
    return (cfg.interpolation if cfg else None) or DEFAULT_INTERPOLATION


def check_weights(name: str, **options: Any) -> bool:
    """Check the local weights file model ``name`` would read with these options (``pretrained``
    True or a path) without building it; raises one line naming the file, or the package that
    ships it. False when there is nothing to check (``pretrained=False``, a model without local
    weights: timm's own downloads are checked by timm)."""
    entry = get_entry(name)
    opts = parse_options(entry, options)
    if entry.weights_check is None or getattr(opts, "pretrained", False) is False:
        return False
    resolve(entry.weights_check)(name, opts)
    return True


def create_model(name: str, num_classes: int, **options: Any) -> nn.Module:
    """Build model ``name`` with a ``num_classes``-way head; ``options`` override its defaults.

    Unknown names or options and bad values raise ``ValueError`` before anything is built."""
    entry = get_entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is invalid; expected an int >= 1")
    opts = parse_options(entry, options)
    try:
        model = resolve(entry.builder)(num_classes, opts)
    except OptionError as err:  # options that can only be checked against the built network
        raise OptionError(f"model {name!r}: {err}") from None
    model.model_name = name
    model.options = dataclasses.asdict(opts)
    return model


def parse_options(entry: ModelEntry, options: Mapping[str, Any]) -> HeadOptions:
    """``entry.defaults`` overridden by ``options``, type-checked against the dataclass fields."""
    cls = entry.options
    hints = get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    merged = {**entry.defaults, **options}
    values: dict[str, Any] = {}
    try:
        for key, value in merged.items():
            if key not in hints:
                raise OptionError(f"unknown option {key!r}; allowed: {', '.join(allowed)}")
            values[key] = _coerce(key, value, hints[key])
        return cls(**values)
    except OptionError as err:
        raise OptionError(f"model {entry.name!r}: {err}") from None


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (bool, int, float, str, list[int] or a union of them)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for option in get_args(hint):
            try:
                return _coerce(key, value, option)
            except OptionError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in get_args(hint))
        raise OptionError(f"option {key!r}={value!r} has the wrong type; expected {names}")
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list | tuple):
            raise OptionError(f"option {key!r}={value!r} has the wrong type; expected a list")
        return [_coerce(key, v, item) for v in value]
    ok = {
        bool: isinstance(value, bool),
        # JSON and some samplers hand over 2.0 for 2; bools are ints in Python but never meant so.
        int: isinstance(value, int)
        and not isinstance(value, bool)
        or isinstance(value, float)
        and value.is_integer(),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise TypeError(f"option {key!r}: unsupported annotation {hint!r}")
    if not ok:
        raise OptionError(f"option {key!r}={value!r} has the wrong type; expected {hint.__name__}")
    return hint(value)
