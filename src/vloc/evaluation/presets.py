"""Named threshold presets for recall ("percentage of queries localized within t and r").

- `indoor`   : 1 cm/1°, 2 cm/2°, 5 cm/5° (7-Scenes, 12-Scenes, Cambridge-like small scenes).
- `outdoor`  : 25 cm/2°, 50 cm/5°, 5 m/10° (Aachen, RobotCar, CMU: visuallocalization.net),
               plus 5 cm/5°.
- `relative` : for scenes without metric scale (SfM / NeRF units): translation thresholds
               are fractions of the scene scale (`Scene.scale()`, the median distance of
               the camera centres to their centroid): 0.5 %/1°, 1 %/2°, 1 %/5°, 5 %/5°.

The 5 cm / 5° recall is reported for *every* metric scene (indoor and outdoor),
because issue figures and the headline comparisons refer to it.

`thresholds_for` turns a preset into (t in scene units, r in degrees, label) triples.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ..errors import VlocError

#: A scene whose cameras spread further than this (metres, `Scene.scale()`) is "outdoor".
OUTDOOR_SCALE_M = 10.0

#: The threshold every metric scene reports (metres, degrees).
ALWAYS_METRIC = (0.05, 5.0)


class Threshold(NamedTuple):
    """A recall threshold: translation in scene units, rotation in degrees, a readable label."""

    t: float
    r: float
    label: str


# Preset definitions: translation in metres (indoor/outdoor) or as a fraction of the
# scene scale (relative), rotation in degrees.
PRESETS: dict[str, tuple[tuple[float, float], ...]] = {
    "indoor": ((0.01, 1.0), (0.02, 2.0), (0.05, 5.0)),
    "outdoor": ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0)),
    "relative": ((0.005, 1.0), (0.01, 2.0), (0.01, 5.0), (0.05, 5.0)),
}


def _num(x: float) -> str:
    return f"{x:.6g}"


def metric_label(t_m: float, r_deg: float) -> str:
    """'5cm/5°' below one metre, '5m/10°' from one metre up."""
    t = f"{_num(t_m * 100)}cm" if t_m < 1.0 else f"{_num(t_m)}m"
    return f"{t}/{_num(r_deg)}°"


def relative_label(fraction: float, r_deg: float) -> str:
    """'1%/5°' for a translation of 1 % of the scene scale."""
    return f"{_num(fraction * 100)}%/{_num(r_deg)}°"


def thresholds_for(preset: str | Iterable[Sequence], scene_scale: float | None = None
                   ) -> list[Threshold]:
    """The thresholds of a preset as (t in scene units, r in degrees, label), by increasing t.

    `relative` needs `scene_scale` (scene units) to turn its fractions into scene units.
    For `outdoor` the 5 cm/5° threshold is added (always reported for metric scenes).
    A list of (t, r) or (t, r, label) in scene units is accepted instead of a name."""
    if not isinstance(preset, str):
        from .metrics import normalize_thresholds
        return [Threshold(*th) for th in normalize_thresholds(preset)]
    key = preset.strip().lower()
    if key not in PRESETS:
        raise VlocError(f"unknown threshold preset {preset!r}; choose one of {sorted(PRESETS)}")
    if key == "relative":
        if scene_scale is None or not (scene_scale > 0) or scene_scale == float("inf"):
            raise VlocError("the 'relative' preset needs a positive, finite scene scale "
                            f"(got {scene_scale!r})")
        out = [Threshold(f * scene_scale, r, relative_label(f, r)) for f, r in PRESETS[key]]
    else:
        pairs = list(PRESETS[key])
        if ALWAYS_METRIC not in pairs:
            pairs.append(ALWAYS_METRIC)
        out = [Threshold(t, r, metric_label(t, r)) for t, r in pairs]
    return sorted(out, key=lambda th: (th.t, th.r))


def default_preset(scene) -> str:
    """'relative' for scenes without metric scale; else 'outdoor' when the cameras spread
    more than OUTDOOR_SCALE_M metres (`scene.scale()`), else 'indoor'."""
    if not getattr(scene, "metric", True):
        return "relative"
    return "outdoor" if scene.scale() > OUTDOOR_SCALE_M else "indoor"


def is_relative(preset: str | None) -> bool:
    return isinstance(preset, str) and preset.strip().lower() == "relative"
