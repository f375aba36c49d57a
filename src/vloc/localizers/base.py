"""The contract every localizer family implements."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

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
    """A position prior (e.g. GPS): centre in map coordinates and radius in map units."""

    center: tuple[float, ...]
    radius: float


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

    @property
    def success(self) -> bool:
        return self.cam_from_world is not None

    @classmethod
    def failed(cls, reason: str, **kw) -> Estimate:
        return cls(None, reason=reason, **kw)


class Localizer(Protocol):
    def localize(self, query: Query, prior: Prior | None = None) -> Estimate: ...
