"""Line clouds (Speciale et al., CVPR 2019): every 3D point of a map is lifted to a 3D
line through it with a random direction (uniform on the sphere), or, with paired-point
lifting (Lee et al., CVPR 2023), two random points share the line through both. The
line is stored as (anchor, unit direction) where the anchor is the point of the line
closest to the map origin: a function of the line alone, so it tells no more than the
line does. The points themselves are never stored; the descriptors stay with their
lines (`desc_line`), and the lines are shuffled so that their order tells nothing.

The correspondence line -> original point (`truth`) exists only in memory, for the
attack's evaluation (`attack.py`); it is never written."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import MapError, VlocError

LIFTINGS = ("random", "paired")
LINES_FILE = "lines.h5"


@dataclass
class LineCloud:
    anchors: np.ndarray        # (L, 3) float64: each line's point closest to the map origin
    directions: np.ndarray     # (L, 3) float64, unit
    descriptors: np.ndarray    # (M, D) float32, unit norm
    desc_line: np.ndarray      # (M,) index into the lines for each descriptor
    lifting: str = "random"

    def __len__(self) -> int:
        return len(self.anchors)

    def subset(self, rows: np.ndarray) -> LineCloud:
        """The lines `rows` (in that order) with their descriptors."""
        rows = np.asarray(rows, dtype=np.int64)
        new = np.full(len(self), -1, np.int64)
        new[rows] = np.arange(len(rows))
        keep = new[self.desc_line] >= 0
        return LineCloud(self.anchors[rows], self.directions[rows], self.descriptors[keep],
                         new[self.desc_line[keep]].astype(np.int32), self.lifting)


def unit_sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    """n directions uniform on the unit sphere (normalised Gaussian vectors)."""
    v = rng.standard_normal((n, 3))
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    while np.any(norm < 1e-9):        # (probability zero; kept for the proof of uniformity)
        bad = norm[:, 0] < 1e-9
        v[bad] = rng.standard_normal((int(bad.sum()), 3))
        norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / norm


def closest_to_origin(points_on_line: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The point of each line closest to the origin (the line's canonical anchor)."""
    p = np.asarray(points_on_line, np.float64)
    v = np.asarray(directions, np.float64)
    return p - np.sum(p * v, axis=1, keepdims=True) * v


def lift_points(xyz: np.ndarray, lifting: str = "random", seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lines through the points `xyz` (P, 3): (anchors (L, 3), directions (L, 3),
    truth (L, 2): the point rows on each line, -1 where a line has one point).
    'random': one line per point, direction uniform on the sphere, L = P.
    'paired': the points are paired at random and each pair shares the line through
    both (an odd point out gets a random direction), L = ceil(P / 2). Lines are shuffled."""
    if lifting not in LIFTINGS:
        raise VlocError(f"lifting must be one of {', '.join(LIFTINGS)}, got {lifting!r}")
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    p = len(xyz)
    if lifting == "random":
        truth = np.stack([rng.permutation(p), np.full(p, -1)], axis=1)
        dirs = unit_sphere(p, rng)
        through = xyz[truth[:, 0]]
    else:
        perm = rng.permutation(p)
        half = p // 2
        truth = np.full(((p + 1) // 2, 2), -1, np.int64)
        truth[:half, 0], truth[:half, 1] = perm[:half], perm[half:2 * half]
        if p % 2:
            truth[half, 0] = perm[-1]
        dirs = unit_sphere(len(truth), rng)
        d = xyz[truth[:half, 1]] - xyz[truth[:half, 0]]
        n = np.linalg.norm(d, axis=1)
        ok = n > 1e-12                  # two identical points: keep the random direction
        dirs[:half][ok] = d[ok] / n[ok, None]
        flip = rng.random(len(dirs)) < 0.5      # the pair's order does not show in the sign
        dirs[flip] *= -1
        through = xyz[truth[:, 0]]
        order = rng.permutation(len(truth))
        truth, dirs, through = truth[order], dirs[order], through[order]
    return closest_to_origin(through, dirs), dirs, truth.astype(np.int64)


def line_cloud_from_points(xyz: np.ndarray, descriptors: np.ndarray, desc_point: np.ndarray,
                           lifting: str = "random", seed: int = 0, keep: float = 1.0
                           ) -> tuple[LineCloud, np.ndarray]:
    """Lift a point map (its points' xyz, descriptors and descriptor -> point) to a line
    cloud, keeping a random fraction `keep` of the points (sparsification). Returns the
    cloud and `truth` (L, 2) (point rows on each line, -1 for none), for evaluation only."""
    if not 0 < keep <= 1:
        raise VlocError(f"keep (the fraction of points lifted) must be in (0, 1], got {keep}")
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    rng = np.random.default_rng([seed, 1])
    if keep < 1:
        n = max(1, int(round(keep * len(xyz))))
        rows = np.sort(rng.choice(len(xyz), n, replace=False))
    else:
        rows = np.arange(len(xyz))
    anchors, dirs, truth_sub = lift_points(xyz[rows], lifting, seed)
    truth = np.where(truth_sub >= 0, rows[np.maximum(truth_sub, 0)], -1)
    line_of_point = np.full(len(xyz), -1, np.int64)
    for c in range(2):
        ok = truth[:, c] >= 0
        line_of_point[truth[ok, c]] = np.nonzero(ok)[0]
    desc_line = line_of_point[np.asarray(desc_point, np.int64)]
    used = desc_line >= 0
    cloud = LineCloud(anchors, dirs, np.asarray(descriptors, np.float32)[used],
                      desc_line[used].astype(np.int32), lifting)
    return cloud, truth


def point_line_distance(points: np.ndarray, anchors: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance of each point to its line (row by row)."""
    d = np.asarray(points, np.float64) - anchors
    return np.linalg.norm(d - np.sum(d * directions, axis=1, keepdims=True) * directions, axis=1)


def write_lines(path: Path, cloud: LineCloud) -> None:
    """lines.h5: anchors, directions, descriptors (fp16), desc_line. No point."""
    with h5py.File(path, "w") as f:
        f.attrs["lifting"] = cloud.lifting
        f.create_dataset("anchors", data=np.asarray(cloud.anchors, np.float64))
        f.create_dataset("directions", data=np.asarray(cloud.directions, np.float64))
        f.create_dataset("descriptors", data=cloud.descriptors.astype(np.float16))
        f.create_dataset("desc_line", data=np.asarray(cloud.desc_line, np.int32))


def read_lines(path: Path) -> LineCloud:
    try:
        with h5py.File(path, "r") as f:
            cloud = LineCloud(f["anchors"][()], f["directions"][()], f["descriptors"][()].astype(np.float32),
                              f["desc_line"][()], str(f.attrs.get("lifting", "random")))
    except (OSError, KeyError) as e:
        raise MapError(f"cannot read the line cloud {path}: {e}") from None
    if len(cloud) == 0:
        raise MapError(f"the line cloud has no line: {path}")
    if cloud.anchors.shape != cloud.directions.shape or cloud.anchors.shape[1:] != (3,):
        raise MapError(f"corrupt line cloud {path}: anchors {cloud.anchors.shape}, "
                       f"directions {cloud.directions.shape}")
    if len(cloud.desc_line) != len(cloud.descriptors) or (
            len(cloud.desc_line) and (cloud.desc_line.min() < 0 or cloud.desc_line.max() >= len(cloud))):
        raise MapError(f"corrupt line cloud {path}: descriptor -> line indices out of range")
    return cloud
