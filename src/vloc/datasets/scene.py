"""The data model every importer produces: a Scene of Frames with splits."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..geometry import Camera, Pose


@dataclass(frozen=True)
class Frame:
    """One image of a scene. `name` is unique in the scene (usually the image path
    relative to the scene root); `cam_from_world` is None where there is no ground truth."""

    name: str
    camera: Camera
    image_path: Path | None = None
    cam_from_world: Pose | None = None
    depth_path: Path | None = None
    depth_scale: float = 1.0          # depth value * depth_scale = metres (scene units)
    depth_registered: bool = True     # depth aligned pixel-for-pixel with the colour image
    timestamp: float | None = None
    sensor: str | None = None         # camera / sensor id where the format has one
    camera_prior: bool = False        # intrinsics are a guess (EXIF, default) that SfM refines

    @property
    def has_pose(self) -> bool:
        return self.cam_from_world is not None

    @property
    def has_depth(self) -> bool:
        return self.depth_path is not None

    def with_pose(self, cam_from_world: Pose | None) -> Frame:
        return replace(self, cam_from_world=cam_from_world)


@dataclass(frozen=True)
class Fold:
    """One mapping/query partition of a scene's frames."""

    mapping: tuple[Frame, ...]
    query: tuple[Frame, ...]
    name: str = "fold0"


@dataclass
class Scene:
    """Frames of one scene in one world frame, with the dataset's official splits.

    `official_splits` maps a split name to (mapping names, query names);
    generic splits (odd-even, every-k, leave-one-out, ...) come from `splits.py`."""

    name: str
    root: Path
    format: str
    frames: list[Frame]
    official_splits: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    metric: bool = True               # False when units are arbitrary (SfM / NeRF)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        names = [f.name for f in self.frames]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[:3]
            raise DataError(f"scene {self.name}: duplicate frame names {dup}")
        self._by_name = {f.name: f for f in self.frames}

    # access ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self):
        return iter(self.frames)

    def frame(self, name: str) -> Frame:
        try:
            return self._by_name[name]
        except KeyError:
            raise DataError(f"scene {self.name} has no frame {name!r}") from None

    @property
    def posed_frames(self) -> list[Frame]:
        return [f for f in self.frames if f.has_pose]

    @property
    def cameras(self) -> list[Camera]:
        out: list[Camera] = []
        for f in self.frames:
            if f.camera not in out:
                out.append(f.camera)
        return out

    def scale(self) -> float:
        """Median distance of the posed camera centres from their centroid."""
        c = np.array([f.cam_from_world.center for f in self.posed_frames])
        if len(c) < 2:
            return 1.0
        return float(np.median(np.linalg.norm(c - c.mean(0), axis=1)))

    def subset(self, names) -> list[Frame]:
        return [self.frame(n) for n in names]

    # loading and splitting -----------------------------------------------
    @classmethod
    def load(cls, path, format: str | None = None) -> Scene:
        """Import a dataset from `path`, detecting its format unless given."""
        from .registry import load_scene
        return load_scene(path, format)

    def split(self, name: str) -> list[Fold]:
        """The folds of a named split (official or generic, see `vloc.datasets.splits`)."""
        from .splits import make_split
        return make_split(self, name)

    def summary(self) -> dict:
        n_pose = len(self.posed_frames)
        return {
            "name": self.name, "format": self.format, "root": str(self.root),
            "frames": len(self.frames), "with_pose": n_pose,
            "with_image": sum(f.image_path is not None for f in self.frames),
            "with_depth": sum(f.has_depth for f in self.frames),
            "cameras": [str(c) for c in self.cameras],
            "metric": self.metric,
            "splits": sorted(self.official_splits),
            "notes": list(self.notes),
        }
