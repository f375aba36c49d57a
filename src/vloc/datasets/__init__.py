"""Importers (one per format), format detection, splits and the synthetic scene generator."""
from .registry import IMPORTERS, detect_format, load_scene
from .scene import Fold, Frame, Scene
from .splits import available_splits, make_split

__all__ = ["IMPORTERS", "Fold", "Frame", "Scene", "available_splits", "detect_format",
           "load_scene", "make_split"]
