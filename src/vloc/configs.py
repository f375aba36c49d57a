"""Shared helper of vloc's configuration dataclasses."""
from __future__ import annotations

from dataclasses import fields

from .errors import VlocError


def check_keys(cls, d: dict, what: str, error=VlocError) -> None:
    """Raise `error` naming unknown keys of `d` for dataclass `cls` (and the known ones)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known))}")
