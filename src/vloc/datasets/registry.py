"""Format detection: each importer says whether a path looks like its format."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DataError
from .scene import Scene

# name -> (detect(path) -> bool, load(path) -> Scene). Filled by importer modules
# listed in `_IMPORTERS` (plain imports; no import magic).
IMPORTERS: dict[str, tuple[Callable[[Path], bool], Callable[[Path], Scene]]] = {}
FALLBACK = "images"     # a plain folder of images: detected only when no other format is


def register(name: str, detect: Callable[[Path], bool], load: Callable[[Path], Scene]) -> None:
    IMPORTERS[name] = (detect, load)


def _ensure_loaded() -> None:
    if IMPORTERS:
        return
    from . import importers  # noqa: F401  (each module calls register())


def detect_format(path) -> str:
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file or directory: {path}")
    _ensure_loaded()
    found = [name for name, (detect, _) in IMPORTERS.items() if name != FALLBACK and detect(path)]
    if not found and IMPORTERS[FALLBACK][0](path):
        found = [FALLBACK]
    if not found:
        raise DataError(f"unknown dataset format at {path} (no known layout, no image files); "
                        f"known formats: {', '.join(sorted(IMPORTERS))}")
    return found[0]


def load_scene(path, format: str | None = None) -> Scene:
    path = Path(path)
    _ensure_loaded()
    if format is None:
        format = detect_format(path)
    if format not in IMPORTERS:
        raise DataError(f"unknown dataset format {format!r}; known: {', '.join(sorted(IMPORTERS))}")
    if not path.exists():
        raise DataError(f"no such file or directory: {path}")
    return IMPORTERS[format][1](path)
