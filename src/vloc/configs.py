"""Shared helpers of vloc's configuration dataclasses: unknown keys, and the types of
user-written values (a TOML file's [map] table), so that `steps = "many"` is a one-line
error rather than a traceback from deep inside a config's validation."""
from __future__ import annotations

import dataclasses
import typing

from .errors import VlocError


def check_keys(cls, d: dict, what: str, error=VlocError) -> None:
    """Raise `error` naming unknown keys of `d` for dataclass `cls` (and the known ones)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known))}")


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table"}


def _fits(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_config_types(config_type: type, data: dict, where: str = "") -> None:
    """Raise VlocError naming the first value of `data` whose type does not fit its field
    of `config_type` (nested config dataclasses are checked as tables). Unknown keys and
    field types other than bool, int, float, str, dict and dataclasses are left to the
    config itself."""
    hints = typing.get_type_hints(config_type)
    for key, value in data.items():
        kind = hints.get(key)
        name = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise VlocError(f"config option {name} must be a table ([{name}]), got {value!r}")
            check_config_types(kind, value, name)
        elif kind in _NAMES and not _fits(value, kind):
            raise VlocError(f"config option {name} must be {_NAMES[kind]}, got {value!r}")
