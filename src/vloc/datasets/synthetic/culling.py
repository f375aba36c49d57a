"""Which quads a camera can see in a large world: a 2D grid of the quads' footprints
(`QuadGrid`) and `visible_quads()`, used by the renderer when the world has a finite
`view_distance`. Every test is conservative: no quad that could be the nearest
surface of a pixel within the view distance is dropped."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["QuadGrid", "visible_quads"]


class QuadGrid:
    """Quads bucketed by the x-y cells of `cell` metres their bounding boxes overlap
    (CSR: cell (i, j) holds `ids[start[i * ny + j]:start[i * ny + j + 1]]`, sorted),
    with the per-quad arrays the renderer and the culling tests need."""

    def __init__(self, quads, cell: float = 32.0):
        self.origin = np.array([q.origin for q in quads], np.float64).reshape(-1, 3)
        self.u = np.array([q.u_edge for q in quads], np.float64).reshape(-1, 3)
        self.v = np.array([q.v_edge for q in quads], np.float64).reshape(-1, 3)
        corners = np.stack([self.origin, self.origin + self.u, self.origin + self.u + self.v,
                            self.origin + self.v], axis=1)
        self.lo, self.hi = corners.min(1), corners.max(1)
        self.center = (self.lo + self.hi) / 2
        self.radius = np.linalg.norm(self.hi - self.lo, axis=1) / 2
        self.front = np.cross(self.v, self.u)          # front normals (not unit)
        self.cell = float(cell)
        self.xy0 = self.lo[:, :2].min(0)
        n = np.floor((self.hi[:, :2].max(0) - self.xy0) / self.cell).astype(np.int64) + 1
        self.nx, self.ny = int(n[0]), int(n[1])
        c0 = np.floor((self.lo[:, :2] - self.xy0) / self.cell).astype(np.int64)
        c1 = np.floor((self.hi[:, :2] - self.xy0) / self.cell).astype(np.int64)
        cells, ids = [], []
        for k in range(len(self.origin)):
            ii, jj = np.meshgrid(np.arange(c0[k, 0], c1[k, 0] + 1), np.arange(c0[k, 1], c1[k, 1] + 1),
                                 indexing="ij")
            cells.append((ii * self.ny + jj).ravel())
            ids.append(np.full(cells[-1].size, k, np.int64))
        cells, ids = np.concatenate(cells), np.concatenate(ids)
        order = np.lexsort((ids, cells))
        self.ids = ids[order]
        self.start = np.searchsorted(cells[order], np.arange(self.nx * self.ny + 1))

    def near(self, xy, radius: float) -> np.ndarray:
        """Sorted ids of the quads whose cells meet the square of half-side `radius`
        around `xy`."""
        lo = np.floor((np.asarray(xy) - radius - self.xy0) / self.cell).astype(np.int64)
        hi = np.floor((np.asarray(xy) + radius - self.xy0) / self.cell).astype(np.int64)
        i0, i1 = max(lo[0], 0), min(hi[0], self.nx - 1)
        j0, j1 = max(lo[1], 0), min(hi[1], self.ny - 1)
        if i0 > i1 or j0 > j1:
            return np.zeros(0, np.int64)
        parts = [self.ids[self.start[i * self.ny + j0]:self.start[i * self.ny + j1 + 1]]
                 for i in range(i0, i1 + 1)]
        return np.unique(np.concatenate(parts))


def visible_quads(world, ray_bounds, cam_from_world, near: float) -> np.ndarray | None:
    """Sorted indices of the quads of `world` that may be seen by a camera whose
    normalized rays (x, y, 1) lie within `ray_bounds` = (xmin, xmax, ymin, ymax):
    within `world.view_distance` of the centre, facing it (quads are one-sided in such
    worlds) and meeting the view frustum. None (all quads) for an unlimited view distance."""
    dist = world.view_distance
    if not math.isfinite(dist):
        return None
    g = world.quad_grid
    R, C = cam_from_world.R, cam_from_world.center
    idx = g.near(C[:2], dist)
    gap = np.maximum(np.maximum(g.lo[idx] - C, C - g.hi[idx]), 0.0)   # to the bounding box
    keep = np.einsum("ij,ij->i", gap, gap) <= dist * dist
    keep &= np.einsum("ij,ij->i", g.front[idx], C - g.origin[idx]) > 0
    idx = idx[keep]
    c = (g.center[idx] - C) @ R.T                     # bounding spheres in camera coordinates
    r = g.radius[idx]
    xmin, xmax, ymin, ymax = ray_bounds
    keep = c[:, 2] + r >= near
    for a, b in ((1.0, -xmax), (-1.0, xmin)):         # x <= xmax z and x >= xmin z
        keep &= (a * c[:, 0] + b * c[:, 2]) <= r * math.hypot(a, b)
    for a, b in ((1.0, -ymax), (-1.0, ymin)):
        keep &= (a * c[:, 1] + b * c[:, 2]) <= r * math.hypot(a, b)
    return idx[keep]
