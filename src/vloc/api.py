"""The Python API in a few functions (what the CLI calls)."""
from __future__ import annotations

from pathlib import Path

from .datasets import Frame, Scene
from .errors import DataError


def build_map(data, out, config=None, method: str = "structure", split: str = "all", fold: int = 0,
              overwrite: bool = False, progress: bool = True) -> dict:
    """Build a map from a Scene (its `split` mapping frames) or from a list of Frames.
    Returns the map's manifest."""
    from .localizers.registry import get_method
    m = get_method(method)
    config = config if config is not None else m.config_type()
    if isinstance(data, (str, Path)):
        data = Scene.load(data)
    if isinstance(data, Scene):
        folds = data.split(split)
        if not 0 <= fold < len(folds):
            raise DataError(f"split {split!r} has {len(folds)} fold(s); fold {fold} does not exist")
        frames = list(folds[fold].mapping)
        source = {"scene": data.name, "path": str(data.root), "format": data.format, "split": split,
                  "fold": folds[fold].name, "frames": [f.name for f in frames]}
    else:
        frames = [f for f in data if isinstance(f, Frame)]
        source = {"frames": [f.name for f in frames]}
    return m.build(frames, Path(out), config, source=source, overwrite=overwrite, progress=progress)


def load_localizer(map_dir):
    """The localizer a map was built for, loaded from disk."""
    from .localizers.registry import load_localizer as _load
    return _load(map_dir)


def evaluate(data, split: str, method: str = "structure", map_dir=None, config=None, **kw):
    """Evaluate a method on a dataset split (see `vloc.evaluation.run.evaluate`)."""
    from .evaluation.run import evaluate as _evaluate
    scene = data if isinstance(data, Scene) else Scene.load(data)
    return _evaluate(scene, split, method, config, map_dir=map_dir, **kw)
