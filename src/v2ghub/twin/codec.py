"""Frozen dataclasses to JSON and back, exactly: the run summaries a result folder keeps.

Floats are written as Python's shortest round-trip text, so a value read back is the same
double; numpy arrays as their bytes (base64), dtype and shape; ``Decimal`` and times as
text; enums as their value.
The types come from each dataclass's annotations, so a file that does not match them is
refused with the field that does not.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import functools
import math
import sys
import types
import typing
from decimal import Decimal
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import numpy as np

T = TypeVar("T")

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def encode(value: object) -> Any:  # noqa: PLR0911 - one case a type
    """A JSON-ready form of ``value`` (dataclasses, arrays, Decimal, times, enums, tuples)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        raw = np.ascontiguousarray(value).tobytes()
        return {
            "dtype": value.dtype.str,
            "shape": list(value.shape),
            "base64": base64.b64encode(raw).decode("ascii"),
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float | np.floating):
        return _number(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode(kind: type[T], data: Any, *, where: str = "") -> T:
    """``data`` (from :func:`encode`) read back as ``kind``."""
    return typing.cast(T, _decode(kind, data, where or kind.__name__))


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    """A dataclass's field types, its module's names (and those it imports only for type
    checking, which live in other modules of ours) in scope; worked out once a class."""
    module = sys.modules[kind.__module__]
    names: dict[str, Any] = dict(vars(module))
    for loaded in list(sys.modules.values()):
        if getattr(loaded, "__name__", "").startswith("v2ghub."):
            for name, value in vars(loaded).items():
                if isinstance(value, type) and dataclasses.is_dataclass(value):
                    names.setdefault(name, value)
    return get_type_hints(kind, globalns=names)


def _decode(kind: Any, data: Any, where: str) -> Any:  # noqa: PLR0911 - one case a type
    origin = get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in get_args(kind) if option is not type(None)]
        if data is None:
            return None
        return _decode(options[0], data, where)
    if dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object")
        hints = _hints(typing.cast(type, kind))
        values = {}
        for f in dataclasses.fields(kind):
            if f.name in data:
                values[f.name] = _decode(hints[f.name], data[f.name], f"{where}.{f.name}")
        made: Any = kind
        return made(**values)
    if origin is np.ndarray or kind is np.ndarray:
        return _array(data, where)
    if origin is tuple:
        args = get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
        return tuple(
            _decode(arg, item, f"{where}[{i}]")
            for i, (arg, item) in enumerate(zip(args, data, strict=True))
        )
    if origin is dict:
        key_type, value_type = get_args(kind)
        return {
            _decode(key_type, key, where): _decode(value_type, item, f"{where}.{key}")
            for key, item in data.items()
        }
    return _scalar(kind, data, where)


def _scalar(kind: Any, data: Any, where: str) -> Any:  # noqa: PLR0911 - one case a type
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(data)
    if kind is bool:
        return bool(data)
    if kind is float:
        return _NON_FINITE[data] if isinstance(data, str) else float(data)
    if kind is int:
        return int(data)
    if kind is str:
        return str(data)
    if kind is Decimal:
        return Decimal(data)
    if kind is dt.datetime:
        return dt.datetime.fromisoformat(data)
    if kind is dt.date:
        return dt.date.fromisoformat(data)
    if kind is dt.timedelta:
        return dt.timedelta(seconds=data)
    if kind is Any or kind is object:
        return data
    raise ValueError(f"{where}: cannot read a {kind!r}")


def _array(data: Any, where: str) -> np.ndarray[Any, Any]:
    if not isinstance(data, dict) or {"dtype", "shape", "base64"} - set(data):
        raise ValueError(f"{where}: expected an array")
    raw = base64.b64decode(data["base64"])
    return np.frombuffer(raw, dtype=np.dtype(data["dtype"])).reshape(data["shape"]).copy()
