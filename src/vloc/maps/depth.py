"""RGB-D maps: 3D points straight from registered depth. Keypoints matched across
frames are merged into one point (tracks by union-find over verified matches, the
point at the mean of the observations that agree); unmatched keypoints with valid
depth become points of track length 1. Written by hand: no library lifts sparse
keypoints with depth into a COLMAP model."""
from __future__ import annotations

import numpy as np

from .._libs import cv2, pycolmap
from ..datasets import Frame
from ..errors import DataError
from ..features import Features
from .colmap_db import known_pose_reconstruction
from .config import MapConfig


def read_depth_image(path, scale: float) -> np.ndarray:
    """A one-channel depth image in metres (value x scale)."""
    d = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if d is None or d.ndim != 2:
        raise DataError(f"cannot read depth image {path} (a one-channel image is needed)")
    return d.astype(np.float32) * scale


def read_depth(frame: Frame) -> np.ndarray:
    return read_depth_image(frame.depth_path, frame.depth_scale)


def keypoint_depth(depth: np.ndarray, kp: np.ndarray, camera, max_depth: float = 0.0) -> np.ndarray:
    """Depth at keypoints (NaN where missing or on a depth discontinuity)."""
    h, w = depth.shape
    x = np.clip((kp[:, 0] * w / camera.width).astype(int), 1, w - 2)
    y = np.clip((kp[:, 1] * h / camera.height).astype(int), 1, h - 2)
    patch = np.stack([depth[y + dy, x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=1)
    d = depth[y, x].astype(np.float64)
    bad = (patch <= 0).any(1) | ~np.isfinite(d) | (patch.max(1) - patch.min(1) > 0.05 * d)
    if max_depth > 0:
        bad |= d > max_depth
    d[bad] = np.nan
    return d


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def lift_depth(frames: list[Frame], feats: dict[str, Features], matches, cfg: MapConfig):
    offsets = np.cumsum([0] + [len(feats[f.name]) for f in frames])
    world = np.full((offsets[-1], 3), np.nan)
    for i, f in enumerate(frames):
        kp = feats[f.name].keypoints
        d = keypoint_depth(read_depth(f), kp, f.camera, cfg.max_depth)
        xy = f.camera.unproject(kp)
        pc = np.c_[xy, np.ones(len(xy))] * d[:, None]
        world[offsets[i]:offsets[i + 1]] = f.cam_from_world.inverse().transform(pc)
    valid = np.all(np.isfinite(world), axis=1)
    uf = _UnionFind(len(world))
    for (i, j), m in matches.items():
        a, b = offsets[i] + m[:, 0], offsets[j] + m[:, 1]
        ok = valid[a] & valid[b] & (np.linalg.norm(world[a] - world[b], axis=1)
                                    < 0.02 + 0.02 * np.linalg.norm(world[a] - frames[i].cam_from_world.center, axis=1))
        for u, v in zip(a[ok], b[ok]):
            uf.union(int(u), int(v))
    nodes = np.nonzero(valid)[0]
    roots = np.array([uf.find(int(n)) for n in nodes])
    rec = known_pose_reconstruction(frames)
    for i, f in enumerate(frames):
        rec.images[i + 1].points2D = pycolmap.Point2DList(
            [pycolmap.Point2D(k.astype(np.float64)) for k in feats[f.name].keypoints])
    frame_of = np.searchsorted(offsets, nodes, side="right") - 1
    order = np.argsort(roots, kind="stable")
    groups = np.split(order, np.nonzero(np.diff(roots[order]))[0] + 1)
    black = np.zeros(3, np.uint8)
    for g in groups:
        track = pycolmap.Track()
        seen = set()
        for k in g:
            fi = int(frame_of[k])
            if fi in seen:          # one observation per image
                continue
            seen.add(fi)
            track.add_element(fi + 1, int(nodes[k] - offsets[fi]))
        rec.add_point3D(world[nodes[g]].mean(0), track, black)
    return rec
