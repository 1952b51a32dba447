"""`study run --set KEY=VALUE`: a space's settings (SpaceSettings fields) from the command line.

Each value is parsed by its field's type (int, float, bool and str from their text; roles,
starting_points and smoke as JSON), checked by SpaceSettings itself, and refused on --resume
when it contradicts what the study recorded. Errors are UsageErrors naming `--set`.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from study.run.request import Request
    from study.spaces.loader import Space
    from study.spaces.settings import SpaceSettings


def _usage(message: str) -> ValueError:
    from study.run.preflight import UsageError  # reads study.json with pandas: not for `--help`

    return UsageError(message)


def settings_types() -> dict[str, str]:
    """SpaceSettings field -> its annotation ('int', 'str', 'dict[str, str]', ...)."""
    from study.spaces.settings import SpaceSettings

    return {f.name: str(f.type) for f in fields(SpaceSettings)}


def parse_set(items: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs as values of each field's type; an unknown key lists the keys."""
    types = settings_types()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in types:
            what = f"unknown key {key!r}" if sep else "expected KEY=VALUE"
            raise _usage(f"--set {item}: {what}; valid keys: {', '.join(types)}")
        try:
            out[key] = _typed(types[key], text.strip())
        except ValueError as e:
            raise _usage(f"--set {item}: {e}") from None
    return out


def _typed(kind: str, text: str) -> Any:
    if kind in ("int", "float"):
        try:
            return int(text) if kind == "int" else _finite(text)
        except ValueError:
            raise ValueError(
                f"expected {'an integer' if kind == 'int' else 'a finite number'}"
            ) from None
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError("expected true or false")
        return text.lower() in ("true", "1", "yes")
    if kind == "str":
        return text
    try:  # (NaN, Infinity and 1e999 are JSON to Python, but no setting or config takes them)
        value = json.loads(text, parse_float=_finite, parse_constant=_finite)
    except json.JSONDecodeError:  # (_finite's own ValueError passes: it names the number)
        raise ValueError(f"expected JSON ({kind})") from None
    is_tuple = kind.startswith("tuple")
    if not isinstance(value, list if is_tuple else dict):
        raise ValueError(f"expected a JSON {'list' if is_tuple else 'object'} ({kind})")
    return tuple(value) if is_tuple else value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text}: expected a finite number")
    return value


def apply_set(
    settings: SpaceSettings, given: dict[str, Any], flags: dict[str, Any]
) -> SpaceSettings:
    """`settings` with --set's values; one that a flag of its own (`flags`: --num-samples,
    --max-epochs) gives differently is an error, as is a value SpaceSettings rejects."""
    for key, value in flags.items():
        if key in given and value is not None and value != given[key]:
            flag = f"--{key.replace('_', '-')}"
            raise _usage(f"--set {key}={given[key]} contradicts {flag} {value}")
    if not given:
        return settings
    try:
        return settings.override(**given)
    except (ValueError, TypeError) as e:
        pairs = " ".join(f"--set {k}={v}" for k, v in given.items())
        raise _usage(f"{pairs}: {e}") from None


def with_smoke(settings: SpaceSettings, given: dict[str, Any], smoke_test: bool) -> SpaceSettings:
    """`settings` whose `smoke` is --set smoke=...'s, so that it is what --smoke-test shrinks the
    study by and what study.json records (it was once recorded while the space's own ran).
    Without --smoke-test it would change nothing: an error."""
    if "smoke" not in given:
        return settings
    if not smoke_test:
        raise _usage(
            f"--set smoke={_json(given['smoke'])}: takes effect only with --smoke-test (what it "
            "shrinks the study by); add --smoke-test or drop it"
        )
    return apply_set(settings, {"smoke": given["smoke"]}, {})


def check_set_on_resume(given: dict[str, Any], settings: SpaceSettings, where: str) -> None:
    """--resume: the study runs with the settings it recorded; a --set must agree with them."""
    for key, value in given.items():
        had = getattr(settings, key)
        if _json(value) != _json(had):  # tuples as lists: as study.json records them
            raise _usage(f"--set {key}={value} contradicts {where}: the study has {key}={had}")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=list)


SMOKE = {"num_samples": 2, "max_epochs": 2, "grace_period": 1, "top_k": 1}


def resolve(a: Request, space: Space) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Settings after smoke, --set and flag overrides (in that order), config constants, and the
    smoke config overrides."""
    from study.spaces.constants import trial_constants

    given = parse_set(getattr(a, "set", None) or [])
    settings = with_smoke(space.settings, given, a.smoke_test)  # --set smoke=... is what runs
    smoke_cfg: dict[str, Any] = {}
    if a.smoke_test:
        smoke_set, smoke_cfg = split_smoke(settings)
        settings = settings.override(**SMOKE, **smoke_set)
    settings = apply_set(
        settings, given, {"num_samples": a.num_samples, "max_epochs": a.max_epochs}
    )
    # a shorter --max-epochs pulls ASHA's first rung down with it (unless --set names the rung)
    max_epochs = a.max_epochs or settings.max_epochs
    grace = settings.grace_period
    settings = settings.override(
        num_samples=a.num_samples,
        max_epochs=max_epochs,
        grace_period=grace if "grace_period" in given else min(grace, max_epochs),
    )

    return settings, trial_constants(settings, a.cpus_per_trial), smoke_cfg


def split_smoke(settings: SpaceSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """A space's `smoke` overrides: (those of settings, those of each trial's config)."""
    from study.spaces.settings import SpaceSettings

    known = {f.name for f in fields(SpaceSettings)}
    smoke = settings.smoke.items()
    return {k: v for k, v in smoke if k in known}, {k: v for k, v in smoke if k not in known}
