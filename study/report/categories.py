"""Config values as the space gave them, and the order their categories are drawn in.

trials.parquet may hold a categorical as its own type (``0.0001``), as text (``"1e-05"``) or, when
its choices mix types, JSON-encoded (``'"none"'``, ``'1'``). Plotting them as strings orders
``1e-05 < 0.0001 < 0``; these pure functions decode them and put numbers in numeric order and
booleans as False, True.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd


def missing(value: Any) -> bool:
    """None, NaN or pd.NA: a trial without this (conditional) value."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def decode(value: Any) -> Any:
    """``value`` as a plain Python scalar: numpy scalars unwrapped, JSON text of a scalar decoded
    (lists and objects stay canonical JSON text, so they remain hashable), missing as None."""
    if missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return value  # plain text such as "relu" or "none"
        if isinstance(parsed, list | dict):
            return json.dumps(parsed)
        return None if parsed is None else parsed
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def category_order(values: Iterable[Any], choices: Sequence[Any] | None = None) -> list[Any]:
    """The distinct present values (decoded), in the order a categorical axis shows them.

    Booleans: False, True. All numbers: ascending. Otherwise the order of the declared
    ``choices`` (the space author's), then any other values: numbers ascending, then text.
    """
    seen = list(dict.fromkeys(v for v in (decode(x) for x in values) if v is not None))
    if seen and all(isinstance(v, bool) for v in seen):
        return sorted(seen)
    if all(_number(v) for v in seen):
        return sorted(seen)
    declared = [d for d in dict.fromkeys(decode(c) for c in choices or ()) if d in seen]
    rest = [v for v in seen if v not in declared]
    nums = sorted(v for v in rest if _number(v))
    texts = sorted((v for v in rest if not _number(v)), key=str)
    return declared + nums + texts


def label(value: Any) -> str:
    """How a value is written on an axis or in a table: floats with 3 significant digits."""
    value = decode(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def two_valued(spec: dict[str, Any]) -> bool:
    """An int hyperparameter with only two values (0/1 switches such as extra_inception_3)."""
    low, high = spec.get("low"), spec.get("high")
    return (
        spec.get("kind") == "int"
        and low is not None
        and high is not None
        and int(high) - int(low) <= 1
    )
