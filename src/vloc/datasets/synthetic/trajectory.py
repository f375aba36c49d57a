"""Camera poses in the synthetic worlds: views from heading / pitch / roll, the
mapping path around a room and query poses near it, or poses spread over the room."""
from __future__ import annotations

import math

import numpy as np

from ...errors import DataError
from ...geometry import Pose
from .world import World, _unit

__all__ = ["cover_poses", "look_at", "pose_from_view", "query_poses", "room_trajectory"]

def pose_from_view(center, yaw: float, pitch: float = 0.0, roll: float = 0.0) -> Pose:
    """`cam_from_world` of a camera at `center` (z-up world) looking along heading
    `yaw` (radians, from +x towards +y), tilted up by `pitch` (radians) and rotated
    by `roll` (radians) about its optical axis."""
    f = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = _unit(np.cross(f, [0.0, 0.0, 1.0]))
    down = np.cross(f, right)
    c, s = math.cos(roll), math.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    R = np.stack([right, down, f])          # rows: camera axes in world coordinates
    C = np.asarray(center, dtype=np.float64)
    return Pose(R, -R @ C)


def look_at(center, target, roll: float = 0.0) -> Pose:
    """`cam_from_world` of a camera at `center` looking at `target` (z-up world)."""
    d = _unit(np.asarray(target, dtype=np.float64) - np.asarray(center, dtype=np.float64))
    if abs(d[2]) > 0.999:
        raise DataError("look_at: the viewing direction cannot be vertical")
    return pose_from_view(center, math.atan2(d[1], d[0]), math.asin(d[2]), roll)


def room_trajectory(world: World, n: int, seed: int = 0) -> list[Pose]:
    """`n` mapping poses on a smooth closed path: two loops around the room's centre
    at varying distance and height; the view turns from the walls (outward) to the
    objects and the far walls (inward) and back, with varying pitch and roll."""
    if world.kind != "room":
        raise DataError(f"room_trajectory needs a room world, got {world.kind!r}")
    if n < 1:
        return []
    lo, hi = np.array(world.free_min), np.array(world.free_max)
    cx, cy = (lo[:2] + hi[:2]) / 2
    a, b = (hi[:2] - lo[:2]) / 2
    H = hi[2] - lo[2]
    ph = np.random.default_rng([seed, 0]).uniform(0, 2 * np.pi, size=6)
    poses = []
    for i in range(n):
        tau = i / n
        phi = ph[0] + 4 * np.pi * tau
        rho = 0.56 + 0.1 * math.sin(2 * np.pi * tau) + 0.03 * math.sin(10 * np.pi * tau + ph[1])
        center = np.array([cx + rho * a * math.cos(phi), cy + rho * b * math.sin(phi),
                           lo[2] + H * (0.52 + 0.1 * math.sin(6 * np.pi * tau + ph[2]))])
        yaw = phi + np.pi * 0.5 * (1 - math.cos(2 * np.pi * tau)) + 0.15 * math.sin(6 * np.pi * tau + ph[3])
        pitch = math.radians(-6.0 + 9.0 * math.sin(10 * np.pi * tau + ph[4]))
        roll = math.radians(3.0 * math.sin(14 * np.pi * tau + ph[5]))
        if not world.is_free(center, margin=0.3)[0]:
            raise DataError(f"mapping camera {i} at {np.round(center, 2).tolist()} is inside an object; "
                            f"use a larger room")
        poses.append(pose_from_view(center, yaw, pitch, roll))
    return poses


def cover_poses(world: World, n: int, seed: int = 0, stream: int = 2,
                band: tuple[float, float] = (0.35, 0.7), margin: float = 0.3) -> list[Pose]:
    """`n` poses spread over the room's free space: one centre per cell of a jittered
    grid over the floor (`margin` metres from the walls; cells picked at random where
    the grid has more than `n`, visited row by row in a snake), height within `band`
    (fractions of the room height), heading uniform, pitch within +-10 deg, roll within
    +-3 deg. A centre inside an object is redrawn in its cell, then anywhere. Draws
    depend on (`seed`, `stream`) and `n` only: mapping and queries use other streams."""
    if world.kind != "room":
        raise DataError(f"cover_poses needs a room world, got {world.kind!r}")
    if n < 1:
        return []
    lo, hi = np.array(world.free_min), np.array(world.free_max)
    lo_xy, size = lo[:2] + margin, hi[:2] - lo[:2] - 2 * margin
    z_lo, z_hi = lo[2] + band[0] * (hi[2] - lo[2]), lo[2] + band[1] * (hi[2] - lo[2])
    rng = np.random.default_rng([seed, stream])
    nx = max(1, round(math.sqrt(n * size[0] / size[1])))
    ny = -(-n // nx)
    step = size / [nx, ny]
    rows, cols = np.divmod(np.sort(rng.permutation(nx * ny)[:n]), nx)
    poses = []
    for k in np.lexsort((np.where(rows % 2 == 1, -cols, cols), rows)):   # snake order
        cell = lo_xy + step * [cols[k], rows[k]]
        for attempt in range(1000):
            xy = cell + step * rng.uniform(size=2) if attempt < 20 else lo_xy + size * rng.uniform(size=2)
            center = np.array([*xy, rng.uniform(z_lo, z_hi)])
            if world.is_free(center, margin)[0]:
                break
        else:
            raise DataError("could not place a camera in free space; use a larger room")
        yaw, pitch, roll = rng.uniform(0, 2 * np.pi), rng.uniform(-10, 10), rng.uniform(-3, 3)
        poses.append(pose_from_view(center, yaw, math.radians(pitch), math.radians(roll)))
    return poses


def _slerp(R0: np.ndarray, R1: np.ndarray, f: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation
    rel = Rotation.from_matrix(R1 @ R0.T).as_rotvec()
    return Rotation.from_rotvec(f * rel).as_matrix() @ R0


def query_poses(world: World, mapping: list[Pose], n: int, seed: int = 0,
                offset: tuple[float, float] = (0.1, 0.5), max_angle: float = 15.0,
                margin: float = 0.25) -> list[Pose]:
    """`n` query poses near the mapping path: a random point between two consecutive
    mapping poses, moved by `offset` metres (min, max) in a random direction and
    rotated by up to `max_angle` degrees about a random axis; always in free space."""
    from scipy.spatial.transform import Rotation
    if n < 1:
        return []
    if len(mapping) < 1:
        raise DataError("query poses need at least one mapping pose")
    rng = np.random.default_rng([seed, 1])
    out = []
    for _ in range(n):
        for _attempt in range(1000):
            i = int(rng.integers(len(mapping)))
            j = (i + 1) % len(mapping)
            f = float(rng.uniform())
            c = (1 - f) * mapping[i].center + f * mapping[j].center
            R = _slerp(mapping[i].R, mapping[j].R, f)
            d = rng.normal(size=3) * [1.0, 1.0, 0.5]
            d = d / np.linalg.norm(d) * rng.uniform(*offset)
            axis = _unit(rng.normal(size=3))
            angle = math.radians(max_angle) * float(rng.uniform())
            if world.is_free(c + d, margin)[0]:
                R = Rotation.from_rotvec(axis * angle).as_matrix() @ R
                out.append(Pose(R, -R @ (c + d)))
                break
        else:
            raise DataError("could not place a query camera in free space; use a larger room")
    return out

