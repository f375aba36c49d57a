"""Point descriptors of a map: for each 3D point, the descriptors of its
observations (all of them, or their mean), stored in points.h5."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import MapError
from ..features import Features


@dataclass
class MapPoints:
    xyz: np.ndarray            # (P, 3) float64, world coordinates
    point_ids: np.ndarray      # (P,) COLMAP point3D ids
    track_length: np.ndarray   # (P,)
    descriptors: np.ndarray    # (M, D) float32, unit norm
    desc_point: np.ndarray     # (M,) index into xyz for each descriptor

    def __len__(self) -> int:
        return len(self.xyz)


def points_from_reconstruction(rec, features: dict[str, Features], mode: str = "all") -> MapPoints:
    names = {im.image_id: im.name for im in rec.images.values()}
    xyz, ids, tl, descs, owner = [], [], [], [], []
    for p, (pid, pt) in enumerate(sorted(rec.points3D.items())):
        obs = [features[names[e.image_id]].descriptors[e.point2D_idx] for e in pt.track.elements]
        xyz.append(pt.xyz)
        ids.append(pid)
        tl.append(len(obs))
        if mode == "mean":
            d = np.mean(obs, axis=0)
            descs.append((d / max(np.linalg.norm(d), 1e-12))[None])
            owner.append([p])
        else:
            descs.append(np.asarray(obs))
            owner.append([p] * len(obs))
    if not xyz:
        raise MapError("the map has no 3D points (too few matches between mapping images?)")
    return MapPoints(np.asarray(xyz, np.float64), np.asarray(ids, np.int64), np.asarray(tl, np.int32),
                     np.concatenate(descs).astype(np.float32),
                     np.concatenate([np.asarray(o, np.int32) for o in owner]))


def write_points(path: Path, pts: MapPoints) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("xyz", data=pts.xyz)
        f.create_dataset("point_ids", data=pts.point_ids)
        f.create_dataset("track_length", data=pts.track_length)
        f.create_dataset("descriptors", data=pts.descriptors.astype(np.float16))
        f.create_dataset("desc_point", data=pts.desc_point)


def read_points(path: Path) -> MapPoints:
    try:
        with h5py.File(path, "r") as f:
            pts = MapPoints(f["xyz"][()], f["point_ids"][()], f["track_length"][()],
                            f["descriptors"][()].astype(np.float32), f["desc_point"][()])
    except (OSError, KeyError) as e:
        raise MapError(f"cannot read map points {path}: {e}") from None
    if len(pts) == 0:
        raise MapError(f"the map has no 3D points: {path}")
    return pts


def read_point_xyz(path: Path) -> np.ndarray:
    """Only the points' coordinates (P, 3), without the descriptors."""
    try:
        with h5py.File(path, "r") as f:
            xyz = f["xyz"][()]
    except (OSError, KeyError) as e:
        raise MapError(f"cannot read map points {path}: {e}") from None
    if len(xyz) == 0:
        raise MapError(f"the map has no 3D points: {path}")
    return xyz
