"""The contract every localizer family implements."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import DataError
from ..geometry import Camera, Pose


@dataclass(frozen=True)
class Query:
    """A query image: a path (or decoded pixels) and, if known, its camera.
    With `camera=None` the focal length is estimated (principal point at the centre)."""

    name: str
    image_path: Path | None = None
    image: np.ndarray | None = None      # uint8 RGB or gray, instead of a path
    camera: Camera | None = None
    depth: np.ndarray | None = None      # metres, registered to the image (RGB-D queries)


@dataclass(frozen=True)
class Prior:
    """A position prior (e.g. GPS): the camera centre lies within `radius` map units of
    `center`, given as (x, y, z) in map coordinates or as the 2 ground-plane
    coordinates of the map (its tiles' axes)."""

    center: tuple[float, ...]
    radius: float

    def __post_init__(self):
        c = tuple(float(v) for v in np.ravel(self.center))
        if len(c) not in (2, 3) or not all(np.isfinite(c)):
            raise DataError(f"a position prior needs 2 or 3 finite coordinates, got {self.center!r}")
        if not (np.isfinite(self.radius) and self.radius > 0):
            raise DataError(f"a position prior needs a positive radius, got {self.radius!r}")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "radius", float(self.radius))

    def ground(self, axes: tuple[int, int]) -> np.ndarray:
        """The centre on the ground plane spanned by map axes `axes`."""
        c = np.array(self.center)
        return c if len(c) == 2 else c[list(axes)]


@dataclass(frozen=True)
class Estimate:
    """The answer to one query. `cam_from_world` is None when localization failed,
    and then `reason` says why in words."""

    cam_from_world: Pose | None
    inliers: int = 0
    correspondences: int = 0
    reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)   # seconds per stage
    camera: Camera | None = None          # the camera used (with the estimated focal if unknown)
    details: dict = field(default_factory=dict)   # method-specific facts (e.g. tiles searched)

    @property
    def success(self) -> bool:
        return self.cam_from_world is not None

    @classmethod
    def failed(cls, reason: str, **kw) -> Estimate:
        return cls(None, reason=reason, **kw)

    def to_dict(self) -> dict:
        """JSON-ready: success, support, reason, timings; the pose (`q_wxyz`, `t` of
        cam_from_world, camera `center`) and the camera used where there are."""
        out = {"success": self.success, "inliers": self.inliers, "correspondences": self.correspondences,
               "reason": self.reason, "timings": self.timings}
        if self.success:
            p = self.cam_from_world
            out.update(q_wxyz=p.q.tolist(), t=p.t.tolist(), center=p.center.tolist())
        if self.camera is not None:
            out["camera"] = str(self.camera)
        return out


class Localizer(Protocol):
    def localize(self, query: Query, prior: Prior | None = None) -> Estimate: ...
