"""Rendering of a synthetic `World` by numpy ray casting: nearest surface per pixel
(`raycast`), mip-mapped texture sampling, shading (`render`). Worlds with a finite
view distance are culled first (`culling.visible_quads`): only nearby quads in front
of the camera are ray-cast, so a frame costs the same in a room or a city."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..._libs import cv2
from ...errors import DataError
from ...geometry import Camera, Pose
from .culling import visible_quads
from .textures import TextureAtlas, texture_atlas
from .world import PointLight, Quad, World, shade

__all__ = ["EDGE_EPS", "NEAR", "RENDER_VERSION", "raycast", "render"]

NEAR = 1e-3                  # nearest visible distance along the optical axis (m)
EDGE_EPS = 1e-9              # quads are closed a little beyond their edges: no cracks at seams
RENDER_VERSION = 1           # bump when the renderer's output changes (cached scenes are re-made)


@dataclass(frozen=True)
class _QuadTable:
    """Per-quad arrays for one camera pose (K quads). For the normalized ray
    p = (x, y, 1): D = delta . p, depth = h / D, s = (alpha . p) / D, t = (beta . p) / D."""

    delta: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    h: np.ndarray
    cam_corners: np.ndarray      # (K, 4, 3) corners in camera coordinates


def _quad_table(world: World, pose: Pose, idx: np.ndarray | None = None) -> _QuadTable:
    """The table of all quads, or of the quads `idx` (in that order)."""
    if idx is None:
        O = np.array([q.origin for q in world.quads])
        U = np.array([q.u_edge for q in world.quads])
        V = np.array([q.v_edge for q in world.quads])
    else:
        g = world.quad_grid
        O, U, V = g.origin[idx], g.u[idx], g.v[idx]
    R, C = pose.R, pose.center
    n = np.cross(U, V)
    h = np.einsum("ij,ij->i", n, O - C)
    delta = n @ R.T
    CO = C - O
    alpha = (np.einsum("ij,ij->i", CO, U)[:, None] * delta + h[:, None] * (U @ R.T)) \
        / np.einsum("ij,ij->i", U, U)[:, None]
    beta = (np.einsum("ij,ij->i", CO, V)[:, None] * delta + h[:, None] * (V @ R.T)) \
        / np.einsum("ij,ij->i", V, V)[:, None]
    corners = np.stack([O, O + U, O + U + V, O + V], axis=1)
    return _QuadTable(delta, alpha, beta, h, corners @ R.T + pose.t)


def _rays(camera: Camera):
    """Normalized coordinates of the pixel centres: (x (W,), y (H,)) for pinhole
    cameras (separable), else (x (H, W), y (H, W))."""
    W, H = camera.width, camera.height
    if not camera.has_distortion:
        return (np.arange(W) + 0.5 - camera.cx) / camera.fx, (np.arange(H) + 0.5 - camera.cy) / camera.fy
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    xy = camera.unproject(np.stack([jj.ravel(), ii.ravel()], 1))
    return xy[:, 0].reshape(H, W), xy[:, 1].reshape(H, W)


def _clip_near(poly: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (N, 3) in camera coordinates to z >= near."""
    out = []
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            out.append(a + (b - a) * (near - a[2]) / (b[2] - a[2]))
    return np.array(out).reshape(-1, 3)


def _visible(world: World, camera: Camera, pose: Pose) -> np.ndarray | None:
    """The quads to ray-cast (sorted indices), None for all."""
    if not math.isfinite(world.view_distance):
        return None
    xs, ys = _rays(camera)
    return visible_quads(world, (xs.min(), xs.max(), ys.min(), ys.max()), pose, NEAR)


def raycast(world: World, camera: Camera, cam_from_world: Pose, *,
            cull: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Nearest surface per pixel: (z-depth float64 (H, W), inf where no hit;
    quad index int32 (H, W), -1 where no hit). `cull=False` ray-casts every quad
    (a reference for the culling; same result)."""
    idx = _visible(world, camera, cam_from_world) if cull else None
    depth, qid = _cast(world, camera, cam_from_world, idx)
    if idx is not None:
        qid = np.where(qid >= 0, idx[np.maximum(qid, 0)], -1).astype(np.int32)
    return depth, qid


def _cast(world: World, camera: Camera, cam_from_world: Pose,
          idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """`raycast` over the quads `idx` (None: all); quad indices are positions in `idx`."""
    tab = _quad_table(world, cam_from_world, idx)
    one_sided = math.isfinite(world.view_distance)
    xs, ys = _rays(camera)
    separable = xs.ndim == 1
    W, H = camera.width, camera.height
    depth = np.full((H, W), np.inf)
    qid = np.full((H, W), -1, np.int32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in range(len(tab.h)):
            if abs(tab.h[k]) < 1e-12:      # the camera lies in the quad's plane
                continue
            if one_sided and tab.h[k] < 0:  # seen from behind
                continue
            if separable:
                poly = _clip_near(tab.cam_corners[k], NEAR)
                if len(poly) == 0:
                    continue
                u = camera.fx * poly[:, 0] / poly[:, 2] + camera.cx
                v = camera.fy * poly[:, 1] / poly[:, 2] + camera.cy
                j0, j1 = max(int(np.floor(u.min() - 0.5)) - 1, 0), min(int(np.ceil(u.max() - 0.5)) + 1, W - 1)
                i0, i1 = max(int(np.floor(v.min() - 0.5)) - 1, 0), min(int(np.ceil(v.max() - 0.5)) + 1, H - 1)
                if j0 > j1 or i0 > i1:
                    continue
                x, y = xs[None, j0:j1 + 1], ys[i0:i1 + 1, None]
            else:
                i0, i1, j0, j1 = 0, H - 1, 0, W - 1
                x, y = xs, ys
            d, al, be = tab.delta[k], tab.alpha[k], tab.beta[k]
            D = d[0] * x + d[1] * y + d[2]
            lam = tab.h[k] / D
            s = (al[0] * x + al[1] * y + al[2]) / D
            t = (be[0] * x + be[1] * y + be[2]) / D
            zb = depth[i0:i1 + 1, j0:j1 + 1]
            hit = (lam > NEAR) & (lam < zb) & (s >= -EDGE_EPS) & (s <= 1 + EDGE_EPS) \
                & (t >= -EDGE_EPS) & (t <= 1 + EDGE_EPS)
            zb[hit] = lam[hit]
            qid[i0:i1 + 1, j0:j1 + 1][hit] = k
    if one_sided:                          # beyond the view distance: background
        r2 = (xs[None, :] ** 2 + ys[:, None] ** 2 if separable else xs ** 2 + ys ** 2) + 1.0
        far = depth * depth * r2 > world.view_distance ** 2
        depth[far], qid[far] = np.inf, -1
    return depth, qid


def _tile_hash(tx: np.ndarray, ty: np.ndarray, seed: int) -> np.ndarray:
    m = np.uint64(0xFFFFFFFF)
    h = (tx.astype(np.uint64) * np.uint64(0x27D4EB2D)) ^ (ty.astype(np.uint64) * np.uint64(0x165667B1)) \
        ^ np.uint64((seed * 0x9E3779B1) & 0xFFFFFFFF)
    h &= m
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & m
    h ^= h >> np.uint64(12)
    h = (h * np.uint64(0x297A2D39)) & m
    h ^= h >> np.uint64(15)
    return h


@dataclass(frozen=True)
class _Tiles:
    """Per texture tile (tx, ty) of one quad, for tx in [x_lo, x_lo + nx), ty likewise:
    the atlas photo and whether it is mirrored in x / y (flat arrays, index
    (tx - x_lo) * ny + (ty - y_lo))."""

    x_lo: int
    y_lo: int
    nx: int
    ny: int
    photo: np.ndarray
    flip_x: np.ndarray
    flip_y: np.ndarray


def _tiles(quad: Quad, atlas: TextureAtlas, X: np.ndarray, Y: np.ndarray) -> _Tiles:
    S = atlas.size
    x_lo, x_hi = int(np.floor(X.min() / S)) - 1, int(np.floor(X.max() / S)) + 1
    y_lo, y_hi = int(np.floor(Y.min() / S)) - 1, int(np.floor(Y.max() / S)) + 1
    tx, ty = np.meshgrid(np.arange(x_lo, x_hi + 1), np.arange(y_lo, y_hi + 1), indexing="ij")
    tx, ty = tx.ravel(), ty.ravel()
    h = _tile_hash(tx, ty, quad.seed)
    ids = np.array([atlas.index(n) for n in quad.textures], np.int64)
    n = len(ids)
    # neighbouring tiles (also diagonally) show different photos where the quad has
    # enough of them; the mirroring is random per tile
    step = (2 if n >= 4 else 1) if n > 1 else 0
    pick = (tx + step * ty + quad.seed) % n if n <= 4 else (h % np.uint64(n)).astype(np.int64)
    return _Tiles(x_lo, y_lo, x_hi - x_lo + 1, y_hi - y_lo + 1, ids[pick],
                  (h & np.uint64(1 << 20)) != 0, (h & np.uint64(1 << 21)) != 0)


def _bilinear(atlas: TextureAtlas, X, Y, lev, tiles: _Tiles) -> np.ndarray:
    """Bilinear samples (M, 3) float32 (0..255) at level-0 texel coordinates (X, Y) in
    mip level `lev` (M,) of a quad's tiled texture."""
    # S = size >> lev texels per photo side, a power of two: tile = coordinate >> shift,
    # position in the tile = coordinate & mask, mirrored = position ^ mask
    shift = np.int64(atlas.n_levels - 1) - lev
    mask = (np.int64(1) << shift) - 1
    scale = np.ldexp(1.0, -lev)
    xl, yl = X * scale - 0.5, Y * scale - 0.5
    x0, y0 = np.floor(xl), np.floor(yl)
    fx, fy = (xl - x0).astype(np.float32), (yl - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    base = atlas.offsets[lev]
    flip_x, flip_y = -tiles.flip_x.astype(np.int64), -tiles.flip_y.astype(np.int64)   # 0 or all ones
    taps_x = [((xi >> shift) - tiles.x_lo) * tiles.ny for xi in (x0, x0 + 1)], [x0 & mask, (x0 + 1) & mask]
    taps_y = [(yi >> shift) - tiles.y_lo for yi in (y0, y0 + 1)], [y0 & mask, (y0 + 1) & mask]
    wx, wy = (1 - fx, fx), (1 - fy, fy)
    out = None
    for a in range(2):
        for b in range(2):
            ti = taps_x[0][a] + taps_y[0][b]
            lx = taps_x[1][a] ^ (flip_x[ti] & mask)
            ly = taps_y[1][b] ^ (flip_y[ti] & mask)
            rgba = atlas.data[base + ((((tiles.photo[ti] << shift) + ly) << shift) + lx)]
            c = rgba.view(np.uint8).reshape(-1, 4)[:, :3] * (wx[a] * wy[b])[:, None]
            if out is None:
                out = c
            else:
                out += c
    return out


def _sample(atlas: TextureAtlas, X, Y, lod, tiles: _Tiles) -> np.ndarray:
    """Trilinear (mip-mapped) samples in [0, 1], (M, 3) float32."""
    top = atlas.n_levels - 1
    lod = np.clip(lod, 0.0, top)
    l0 = np.floor(lod).astype(np.int64)
    frac = (lod - l0).astype(np.float32)[:, None]
    c0 = _bilinear(atlas, X, Y, l0, tiles)
    c1 = _bilinear(atlas, X, Y, np.minimum(l0 + 1, top), tiles)
    c0 += (c1 - c0) * frac
    c0 *= np.float32(1.0 / 255.0)
    return c0


def _shade_pixels(world: World, camera: Camera, pose: Pose, qid: np.ndarray,
                  texture_size: int, quads: np.ndarray | None = None,
                  lod_bias: float = 0.0) -> np.ndarray:
    """Linear RGB (H, W, 3) float32 of the pixels whose nearest quad is `qid` (positions
    in `quads`, the indices of the quads ray-cast; None: all)."""
    H, W = qid.shape
    n_quads = len(world.quads) if quads is None else len(quads)
    out = np.empty((H * W, 3), np.float32)
    out[:] = np.asarray(world.background, np.float32)
    flat = qid.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(-1, n_quads + 1))
    xs, ys = _rays(camera)
    tab = _quad_table(world, pose, quads)
    atlas = texture_atlas(world.textures, texture_size)
    fxi, fyi = 1.0 / camera.fx, 1.0 / camera.fy
    point_lights = any(isinstance(L, PointLight) for L in world.lighting.lights)
    for k in range(n_quads):
        quad = world.quads[k if quads is None else quads[k]]
        idx = order[bounds[k + 1]:bounds[k + 2]]
        if len(idx) == 0:
            continue
        if xs.ndim == 1:
            x, y = xs[idx % W], ys[idx // W]
        else:
            x, y = xs.ravel()[idx], ys.ravel()[idx]
        d, al, be = tab.delta[k], tab.alpha[k], tab.beta[k]
        iD = 1.0 / (d[0] * x + d[1] * y + d[2])
        s = (al[0] * x + al[1] * y + al[2]) * iD
        t = (be[0] * x + be[1] * y + be[2]) * iD
        # texel coordinates (level 0) and their derivatives along the pixel axes
        su = math.sqrt(sum(c * c for c in quad.u_edge)) / quad.texel
        sv = math.sqrt(sum(c * c for c in quad.v_edge)) / quad.texel
        X = s * su + quad.offset[0] / quad.texel
        Y = t * sv + quad.offset[1] / quad.texel
        dXdu, dXdv = (su * fxi) * (al[0] - s * d[0]) * iD, (su * fyi) * (al[1] - s * d[1]) * iD
        dYdu, dYdv = (sv * fxi) * (be[0] - t * d[0]) * iD, (sv * fyi) * (be[1] - t * d[1]) * iD
        rho2 = np.maximum(dXdu * dXdu + dYdu * dYdu, dXdv * dXdv + dYdv * dYdv)
        lod = 0.5 * np.log2(np.maximum(rho2, 1e-20)) + lod_bias
        albedo = _sample(atlas, X, Y, lod, _tiles(quad, atlas, X, Y))
        if quad.tint != (1.0, 1.0, 1.0):
            albedo *= np.asarray(quad.tint, np.float32)
        if world.albedo_hook is not None:         # appearance conditions (conditions.py)
            albedo = world.albedo_hook(quad, albedo, X, Y)
        points = None
        if point_lights:
            points = np.asarray(quad.origin) + s[:, None] * np.asarray(quad.u_edge) \
                + t[:, None] * np.asarray(quad.v_edge)
        col = shade(albedo, points, quad.normal, world.lighting)
        if world.fog is not None:                 # distance = z-depth * |(x, y, 1)|
            f0, f1 = world.fog
            dist = (tab.h[k] * iD) * np.sqrt(x * x + y * y + 1.0)
            f = np.clip((dist - f0) / (f1 - f0), 0.0, 1.0)
            f = (f * f * (3.0 - 2.0 * f)).astype(np.float32)[:, None]
            col += (np.asarray(world.background, np.float32) - col) * f
        out[idx] = col
    return out.reshape(H, W, 3)


def render(world: World, camera: Camera, cam_from_world: Pose, *, supersample: int = 1,
           texture_size: int = 512, cull: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render `world` seen by `camera` at `cam_from_world`.

    Returns (rgb uint8 (H, W, 3), depth float32 (H, W)): depth is the z-depth
    (along the optical axis, metres) of the nearest surface through each pixel
    centre, 0 where the ray hits nothing. Textures are mip-mapped (trilinear, level
    from the pixel footprint); `supersample` > 1 also averages s x s colour samples
    per pixel (anti-aliased silhouettes, s^2 times slower). `cull=False` ray-casts
    every quad of a world with a view distance (a slow reference, same result)."""
    if not isinstance(cam_from_world, Pose):
        raise DataError(f"cam_from_world must be a Pose, got {type(cam_from_world).__name__}")
    supersample = int(supersample)
    if supersample < 1:
        raise DataError(f"supersample must be >= 1, got {supersample}")
    idx = _visible(world, camera, cam_from_world) if cull else None
    depth, qid = _cast(world, camera, cam_from_world, idx)
    if supersample == 1:
        rgb = _shade_pixels(world, camera, cam_from_world, qid, texture_size, idx)
    else:
        hi = camera.scaled(supersample)
        idx_hi = _visible(world, hi, cam_from_world) if cull else None
        _, qid_hi = _cast(world, hi, cam_from_world, idx_hi)
        rgb_hi = _shade_pixels(world, hi, cam_from_world, qid_hi, texture_size, idx_hi)
        rgb = cv2.resize(rgb_hi, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    rgb8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    depth32 = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    return rgb8, depth32
