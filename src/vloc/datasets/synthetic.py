"""The embedded default scene of vloc: a textured world rendered by numpy ray casting.

vloc ships no data; `vloc demo` and many tests use the scene generated here. Three
independent layers keep later extensions (a street-grid city, lighting / night /
season conditions) local:

- geometry: a `World` is a list of textured rectangles (`Quad`s) plus the free
  space a camera may move in. `room_world()` builds a room (floor, ceiling, four
  walls) with boxes and a pillar inside, so the scene is truly 3D.
- texture: every quad carries real photographs bundled with scikit-image (no
  download), tiled at a physical texel size. Each texture tile picks one of the
  quad's photos and a mirroring from a hash of its tile index, so repetitions are
  rare. Sampling is trilinear from a mip pyramid, the level chosen from the
  analytic pixel footprint (anti-aliased, so SIFT features are stable).
- shading: `shade()` applies a `Lighting` (ambient + Lambertian point and
  directional lights) to the sampled albedo; view independent, no shadows.

World coordinates are metric with z up (the floor of the room is z = 0). Camera
poses are `cam_from_world` with OpenCV axes, and rays go through pixel centres in
COLMAP's convention (pixel (i, j) has its centre at (j + 0.5, i + 0.5)).

`render()` gives an RGB image and the z-depth (along the optical axis, metres) of
the nearest surface per pixel; `generate_scene()` writes a whole scene (mapping and
query frames, depth, manifest) that the "synthetic" importer reads back.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .._libs import cv2
from ..errors import DataError
from ..geometry import Camera, Pose
from .importers import synthetic_format as _fmt
from .scene import Scene

__all__ = [
    "PHOTOS", "Block", "DirectionalLight", "Lighting", "PointLight", "Quad", "SyntheticConfig",
    "TextureAtlas", "World", "box_quads", "build_world", "generate_scene", "load_photo",
    "look_at", "pose_from_view", "query_poses", "raycast", "rect", "render", "room_trajectory",
    "room_world", "scene_poses", "shade", "texture_atlas",
]

MANIFEST = _fmt.MANIFEST
DEPTH_SCALE = 0.001          # depth PNG value * DEPTH_SCALE = metres
NEAR = 1e-3                  # nearest visible distance along the optical axis (m)
EDGE_EPS = 1e-9              # quads are closed a little beyond their edges: no cracks at seams
RENDER_VERSION = 1           # bump when the renderer's output changes (cached scenes are re-made)

# ---------------------------------------------------------------------------
# textures
# ---------------------------------------------------------------------------

# Images shipped inside the scikit-image wheel (checked with scikit-image 0.26: each
# loads from the package folder, with its hash verified, without pooch or network).
# skimage.data's other images (eagle, lily, kidney, cells3d, ...) need a download.
PHOTOS: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "logo",
    "moon", "page", "retina", "rocket", "text",
)


def load_photo(name: str) -> np.ndarray:
    """A photograph bundled with scikit-image as HxWx3 uint8 RGB (gray is repeated,
    transparency is composited over white). Never downloads anything."""
    if name not in PHOTOS:
        raise DataError(f"unknown texture {name!r}; available offline: {', '.join(PHOTOS)}")
    import skimage.data
    try:
        img = np.asarray(getattr(skimage.data, name)())
    except Exception as e:  # noqa: BLE001  (a broken or stripped scikit-image install)
        raise DataError(f"texture {name!r} cannot be loaded from scikit-image: {e}") from None
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64) * (255.0 if img.max() <= 1 else 1.0)), 0, 255)
        img = img.astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        alpha = img[..., 3:].astype(np.float32) / 255.0
        img = np.round(img[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(img[..., :3])


def _square(img: np.ndarray, size: int) -> np.ndarray:
    """Square crop (very elongated images are first repeated along their short side)
    resized to size x size."""
    h, w = img.shape[:2]
    if max(h, w) / min(h, w) >= 1.6:
        k = round(max(h, w) / min(h, w))
        img = np.concatenate([img] * k, axis=0 if h < w else 1)
        h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    img = np.ascontiguousarray(img[y0:y0 + s, x0:x0 + s])
    if s == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)


class TextureAtlas:
    """Square photos of `size` texels with all their mip levels, packed as RGBA
    uint32 in one flat array for fast gathers. Level l holds (size >> l)^2 texels
    per photo, at `offsets[l] + (photo * S_l + row) * S_l + col`."""

    def __init__(self, names: tuple[str, ...], size: int = 512):
        if size < 2 or size & (size - 1):
            raise DataError(f"texture size must be a power of two >= 2, got {size}")
        self.names = tuple(names)
        self.size = int(size)
        self.n_levels = int(math.log2(size)) + 1
        imgs = [_square(load_photo(n), size) for n in self.names]
        chunks, offsets, off = [], [], 0
        for lev in range(self.n_levels):
            s = size >> lev
            rgba = np.full((len(imgs), s, s, 4), 255, np.uint8)
            rgba[..., :3] = np.stack(imgs)
            chunks.append(rgba.reshape(-1, 4).view(np.uint32).ravel())
            offsets.append(off)
            off += len(imgs) * s * s
            if s > 1:
                imgs = [cv2.resize(im, (s // 2, s // 2), interpolation=cv2.INTER_AREA) for im in imgs]
        self.data = np.concatenate(chunks)
        self.offsets = np.asarray(offsets, np.int64)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise DataError(f"texture {name!r} is not in this atlas") from None


@lru_cache(maxsize=4)
def texture_atlas(names: tuple[str, ...], size: int = 512) -> TextureAtlas:
    """The (cached) atlas of the given photos."""
    return TextureAtlas(tuple(names), size)


# ---------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------

def _vec(v, n=3) -> tuple[float, ...]:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.shape != (n,) or not np.all(np.isfinite(a)):
        raise DataError(f"expected {n} finite numbers, got {v!r}")
    return tuple(float(x) for x in a)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    if n < 1e-12:
        raise DataError("zero-length direction")
    return v / n


@dataclass(frozen=True)
class Quad:
    """A textured rectangle: the points origin + s * u_edge + t * v_edge, s, t in [0, 1].

    Seen from its front, u_edge points right and v_edge down (like an image's axes);
    the front normal is v_edge x u_edge. `textures` are photo names (see `PHOTOS`):
    the surface is tiled with squares of `texel * texture_size` metres, each showing
    one of them (chosen with its mirroring from a hash of the tile and `seed`).
    `offset` shifts the texture along (u, v) in metres; `tint` multiplies the albedo."""

    origin: tuple[float, float, float]
    u_edge: tuple[float, float, float]
    v_edge: tuple[float, float, float]
    textures: tuple[str, ...]
    texel: float = 0.004
    offset: tuple[float, float] = (0.0, 0.0)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0
    name: str = ""

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "origin", _vec(self.origin))
        set_(self, "u_edge", _vec(self.u_edge))
        set_(self, "v_edge", _vec(self.v_edge))
        set_(self, "offset", _vec(self.offset, 2))
        set_(self, "tint", _vec(self.tint))
        tex = (self.textures,) if isinstance(self.textures, str) else tuple(self.textures)
        if not tex:
            raise DataError(f"quad {self.name!r} has no texture")
        for t in tex:
            if t not in PHOTOS:
                raise DataError(f"quad {self.name!r}: unknown texture {t!r}; available: {', '.join(PHOTOS)}")
        set_(self, "textures", tex)
        u, v = np.array(self.u_edge), np.array(self.v_edge)
        lu, lv = np.linalg.norm(u), np.linalg.norm(v)
        if lu < 1e-9 or lv < 1e-9:
            raise DataError(f"quad {self.name!r} has a zero-length edge")
        if abs(u @ v) > 1e-9 * lu * lv:
            raise DataError(f"quad {self.name!r} is not a rectangle (edges not orthogonal)")
        if not (self.texel > 0 and math.isfinite(self.texel)):
            raise DataError(f"quad {self.name!r}: texel size must be positive, got {self.texel}")
        set_(self, "texel", float(self.texel))
        set_(self, "seed", int(self.seed))

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the front side."""
        return _unit(np.cross(self.v_edge, self.u_edge))

    def corners(self) -> np.ndarray:
        """(4, 3) corners: origin, +u, +u+v, +v."""
        o, u, v = (np.array(x) for x in (self.origin, self.u_edge, self.v_edge))
        return np.stack([o, o + u, o + u + v, o + v])


def rect(center, normal, up, width: float, height: float, textures, **kw) -> Quad:
    """A `width` x `height` rectangle centred at `center`, its front facing `normal`,
    with its texture upright along `up` (as seen from the front)."""
    n = _unit(normal)
    up = np.asarray(up, dtype=np.float64)
    up = _unit(up - (up @ n) * n)
    right = np.cross(up, n)          # the viewer looks along -n
    c = np.asarray(center, dtype=np.float64)
    origin = c - right * width / 2 + up * height / 2
    return Quad(origin, right * width, -up * height, textures, **kw)


@dataclass(frozen=True)
class Block:
    """An obstacle for cameras: a box standing on z = z0, rotated by `yaw` degrees
    about the vertical axis through (x, y)."""

    center: tuple[float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0
    z0: float = 0.0

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        c, s = math.cos(math.radians(self.yaw)), math.sin(math.radians(self.yaw))
        dx, dy = p[:, 0] - self.center[0], p[:, 1] - self.center[1]
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        return ((np.abs(lx) <= self.size[0] / 2 + margin) & (np.abs(ly) <= self.size[1] / 2 + margin)
                & (p[:, 2] >= self.z0 - margin) & (p[:, 2] <= self.z0 + self.size[2] + margin))


def box_quads(block: Block, textures, *, top: bool = True, bottom: bool = False,
              texel: float = 0.003, seed: int = 0, name: str = "box", **kw) -> list[Quad]:
    """The outward-facing faces of a `Block` (sides, and top / bottom if asked)."""
    c, s = math.cos(math.radians(block.yaw)), math.sin(math.radians(block.yaw))
    ax, ay = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    sx, sy, sz = block.size
    mid = np.array([block.center[0], block.center[1], block.z0 + sz / 2])
    z = np.array([0.0, 0.0, 1.0])
    faces = [(ax, sy, sx), (-ax, sy, sx), (ay, sx, sy), (-ay, sx, sy)]
    quads = [rect(mid + n * depth / 2, n, z, width, sz, textures, texel=texel, seed=seed + 7 * i,
                  offset=(0.37 * i, 0.21 * i), name=f"{name}/side{i}", **kw)
             for i, (n, width, depth) in enumerate(faces)]
    if top:
        quads.append(rect(mid + z * sz / 2, z, ay, sx, sy, textures, texel=texel, seed=seed + 101,
                          name=f"{name}/top", **kw))
    if bottom:
        quads.append(rect(mid - z * sz / 2, -z, ay, sx, sy, textures, texel=texel, seed=seed + 103,
                          name=f"{name}/bottom", **kw))
    return quads


# ---------------------------------------------------------------------------
# shading
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PointLight:
    """A point light; its Lambertian term falls off as 1 / (1 + (d / falloff)^2)."""

    position: tuple[float, float, float]
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    falloff: float = 5.0


@dataclass(frozen=True)
class DirectionalLight:
    """A distant light (the sun); `direction` is where the light travels to."""

    direction: tuple[float, float, float]
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Lighting:
    """Ambient + Lambertian lights; `exposure` scales the result."""

    ambient: tuple[float, float, float] = (0.55, 0.55, 0.55)
    lights: tuple[PointLight | DirectionalLight, ...] = ()
    exposure: float = 1.0


def shade(albedo: np.ndarray, points: np.ndarray, normals: np.ndarray, lighting: Lighting) -> np.ndarray:
    """Radiance (M, 3) float32 of surface points (M, 3) with unit front normals (M, 3)
    or one normal (3,) for all, and albedo (M, 3) in [0, 1] under `lighting` (view
    independent)."""
    normals = np.asarray(normals, dtype=np.float64)
    light = np.empty_like(albedo, dtype=np.float32)
    light[:] = np.asarray(lighting.ambient, np.float32)
    for L in lighting.lights:
        if isinstance(L, PointLight):
            d = np.asarray(L.position, np.float64) - points
            dist = np.sqrt(np.einsum("ij,ij->i", d, d))
            cos = (d @ normals if normals.ndim == 1 else np.einsum("ij,ij->i", normals, d)) \
                / np.maximum(dist, 1e-9)
            w = np.maximum(cos, 0.0) / (1.0 + (dist / L.falloff) ** 2)
        elif isinstance(L, DirectionalLight):
            w = np.maximum(-(normals @ _unit(L.direction)), 0.0)
        else:
            raise DataError(f"unknown light {L!r}")
        light += w.astype(np.float32)[:, None] * np.asarray(L.color, np.float32)
    return albedo * light * np.float32(lighting.exposure)


# ---------------------------------------------------------------------------
# worlds
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    """Textured quads, their lighting, and where cameras may be: inside the box
    [free_min, free_max] and outside every `obstacles` block."""

    quads: tuple[Quad, ...]
    lighting: Lighting = Lighting()
    free_min: tuple[float, float, float] = (-np.inf, -np.inf, -np.inf)
    free_max: tuple[float, float, float] = (np.inf, np.inf, np.inf)
    obstacles: tuple[Block, ...] = ()
    background: tuple[float, float, float] = (0.62, 0.74, 0.88)   # rays that hit nothing
    kind: str = "custom"

    def __post_init__(self):
        object.__setattr__(self, "quads", tuple(self.quads))
        object.__setattr__(self, "obstacles", tuple(self.obstacles))
        if not self.quads:
            raise DataError("a world needs at least one quad")

    @property
    def textures(self) -> tuple[str, ...]:
        """The photos used, in order of first use."""
        return tuple(dict.fromkeys(t for q in self.quads for t in q.textures))

    def is_free(self, points, margin: float = 0.0) -> np.ndarray:
        """Whether each of the (N, 3) points is in free space, `margin` metres clear."""
        p = np.atleast_2d(np.asarray(points, dtype=np.float64))
        ok = np.all((p >= np.array(self.free_min) + margin) & (p <= np.array(self.free_max) - margin), axis=1)
        for b in self.obstacles:
            ok &= ~b.contains(p, margin)
        return ok

    def with_lighting(self, lighting: Lighting) -> World:
        return replace(self, lighting=lighting)


def room_world(size=(10.0, 8.0, 3.0), *, objects: bool = True, texel: float = 0.003) -> World:
    """A closed room of size (x, y, height) metres, the floor centred at the origin,
    with a pillar and boxes inside (`objects`). Walls are tiled with photos at
    `texel` metres per texel (the floor likewise; boxes a bit finer)."""
    W, D, H = _vec(size)
    if W < 6 or D < 5 or H < 2.4:
        raise DataError(f"room size must be at least 6 x 5 x 2.4 m, got {W} x {D} x {H}")
    a, b = W / 2, D / 2
    x, y, z = np.eye(3)
    quads = [
        rect((0, 0, 0), z, y, W, D, ("gravel", "grass", "brick"), seed=11, offset=(0.31, 0.77),
             name="floor", texel=texel),
        rect((0, 0, H), -z, y, W, D, ("page", "text", "coins"), seed=12, offset=(0.13, 0.52),
             tint=(1.0, 0.96, 0.88), name="ceiling", texel=texel),
        rect((0, b, H / 2), -y, z, W, H, ("astronaut", "coffee", "rocket", "immunohistochemistry"),
             seed=13, offset=(0.45, 0.2), name="wall_north", texel=texel),
        rect((0, -b, H / 2), y, z, W, H, ("chelsea", "hubble_deep_field", "page", "gravel"),
             seed=14, offset=(1.1, 0.6), name="wall_south", texel=texel),
        rect((a, 0, H / 2), -x, z, D, H, ("camera", "grass", "coffee", "immunohistochemistry"),
             seed=15, offset=(0.8, 0.35), tint=(1.0, 0.93, 0.85), name="wall_east", texel=texel),
        rect((-a, 0, H / 2), x, z, D, H, ("rocket", "astronaut", "text", "brick"), seed=16,
             offset=(0.2, 0.9), tint=(0.95, 1.0, 0.92), name="wall_west", texel=texel),
    ]
    blocks: list[Block] = []
    if objects:
        layout = [  # (x/a, y/b, size x, size y, height, yaw deg, textures, tint)
            (-0.14, 0.06, 0.5, 0.5, H, 0, ("brick", "coins"), (1.0, 0.9, 0.8)),
            (0.16, -0.12, 0.9, 0.7, 1.0, 20, ("coffee", "camera"), (1, 1, 1)),
            (0.12, 0.20, 0.6, 0.6, 0.6, -35, ("chelsea", "gravel"), (1, 1, 1)),
            (0.80, 0.78, 1.2, 0.8, 0.9, 0, ("rocket", "grass"), (1, 1, 1)),
            (-0.82, -0.75, 0.7, 1.4, 2.0, 0, ("astronaut", "text"), (1, 1, 1)),
            (-0.88, 0.45, 0.5, 1.0, 0.8, 0, ("hubble_deep_field", "brick"), (1, 1, 1)),
            (0.35, -0.88, 1.6, 0.5, 1.2, 0, ("immunohistochemistry", "page"), (1, 1, 1)),
        ]
        for i, (fx, fy, sx, sy, sz, yaw, tex, tint) in enumerate(layout):
            blk = Block((fx * a, fy * b), (sx, sy, min(sz, H)), yaw)
            blocks.append(blk)
            quads += box_quads(blk, tex, top=sz < H, texel=texel * 0.6, seed=100 + 13 * i,
                               tint=tint, name=f"object{i}")
    lighting = Lighting(
        ambient=(0.52, 0.52, 0.52),
        lights=(PointLight((0.2 * a, -0.1 * b, H - 0.25), (0.42, 0.40, 0.36), falloff=max(a, b)),
                PointLight((-0.5 * a, 0.4 * b, H - 0.25), (0.25, 0.26, 0.30), falloff=max(a, b))))
    return World(quads=tuple(quads), lighting=lighting, free_min=(-a, -b, 0.0), free_max=(a, b, H),
                 obstacles=tuple(blocks), background=(0.0, 0.0, 0.0), kind="room")


# ---------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _QuadTable:
    """Per-quad arrays for one camera pose (K quads). For the normalized ray
    p = (x, y, 1): D = delta . p, depth = h / D, s = (alpha . p) / D, t = (beta . p) / D."""

    delta: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    h: np.ndarray
    cam_corners: np.ndarray      # (K, 4, 3) corners in camera coordinates


def _quad_table(world: World, pose: Pose) -> _QuadTable:
    O = np.array([q.origin for q in world.quads])
    U = np.array([q.u_edge for q in world.quads])
    V = np.array([q.v_edge for q in world.quads])
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


def raycast(world: World, camera: Camera, cam_from_world: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Nearest surface per pixel: (z-depth float64 (H, W), inf where no hit;
    quad index int32 (H, W), -1 where no hit)."""
    tab = _quad_table(world, cam_from_world)
    xs, ys = _rays(camera)
    separable = xs.ndim == 1
    W, H = camera.width, camera.height
    depth = np.full((H, W), np.inf)
    qid = np.full((H, W), -1, np.int32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in range(len(world.quads)):
            if abs(tab.h[k]) < 1e-12:      # the camera lies in the quad's plane
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
    S = atlas.size >> lev
    scale = np.ldexp(1.0, -lev)
    xl, yl = X * scale - 0.5, Y * scale - 0.5
    x0, y0 = np.floor(xl), np.floor(yl)
    fx, fy = (xl - x0).astype(np.float32), (yl - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    base = atlas.offsets[lev]
    taps_x, taps_y = [], []
    for xi in (x0, x0 + 1):
        tx = np.floor_divide(xi, S)
        taps_x.append((tx - tiles.x_lo, xi - tx * S))
    for yi in (y0, y0 + 1):
        ty = np.floor_divide(yi, S)
        taps_y.append((ty - tiles.y_lo, yi - ty * S))
    wx, wy = (1 - fx, fx), (1 - fy, fy)
    out = np.zeros((len(X), 3), np.float32)
    for a, (tx, lx) in enumerate(taps_x):
        for b, (ty, ly) in enumerate(taps_y):
            ti = tx * tiles.ny + ty
            lx2 = np.where(tiles.flip_x[ti], S - 1 - lx, lx)
            ly2 = np.where(tiles.flip_y[ti], S - 1 - ly, ly)
            rgba = atlas.data[base + (tiles.photo[ti] * S + ly2) * S + lx2].view(np.uint8).reshape(-1, 4)
            out += rgba[:, :3] * (wx[a] * wy[b])[:, None]
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
                  texture_size: int, lod_bias: float = 0.0) -> np.ndarray:
    """Linear RGB (H, W, 3) float32 of the pixels whose nearest quad is `qid`."""
    H, W = qid.shape
    out = np.empty((H * W, 3), np.float32)
    out[:] = np.asarray(world.background, np.float32)
    flat = qid.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(-1, len(world.quads) + 1))
    xs, ys = _rays(camera)
    tab = _quad_table(world, pose)
    atlas = texture_atlas(world.textures, texture_size)
    fxi, fyi = 1.0 / camera.fx, 1.0 / camera.fy
    for k, quad in enumerate(world.quads):
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
        points = np.asarray(quad.origin) + s[:, None] * np.asarray(quad.u_edge) \
            + t[:, None] * np.asarray(quad.v_edge)
        out[idx] = shade(albedo, points, quad.normal, world.lighting)
    return out.reshape(H, W, 3)


def render(world: World, camera: Camera, cam_from_world: Pose, *, supersample: int = 1,
           texture_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Render `world` seen by `camera` at `cam_from_world`.

    Returns (rgb uint8 (H, W, 3), depth float32 (H, W)): depth is the z-depth
    (along the optical axis, metres) of the nearest surface through each pixel
    centre, 0 where the ray hits nothing. Textures are mip-mapped (trilinear, level
    from the pixel footprint); `supersample` > 1 also averages s x s colour samples
    per pixel (anti-aliased silhouettes, s^2 times slower)."""
    if not isinstance(cam_from_world, Pose):
        raise DataError(f"cam_from_world must be a Pose, got {type(cam_from_world).__name__}")
    supersample = int(supersample)
    if supersample < 1:
        raise DataError(f"supersample must be >= 1, got {supersample}")
    depth, qid = raycast(world, camera, cam_from_world)
    if supersample == 1:
        rgb = _shade_pixels(world, camera, cam_from_world, qid, texture_size)
    else:
        hi = camera.scaled(supersample)
        _, qid_hi = raycast(world, hi, cam_from_world)
        rgb_hi = _shade_pixels(world, hi, cam_from_world, qid_hi, texture_size)
        rgb = cv2.resize(rgb_hi, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    rgb8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    depth32 = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    return rgb8, depth32


# ---------------------------------------------------------------------------
# trajectories
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# scenes on disk
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines a generated scene (same config -> identical files)."""

    name: str = "synthetic_room"
    world: str = "room"
    room_size: tuple[float, float, float] = (10.0, 8.0, 3.0)
    width: int = 640
    height: int = 480
    focal: float = 500.0                     # PINHOLE, fx = fy, principal point at the centre
    n_mapping: int = 48
    n_query: int = 12
    seed: int = 0
    query_offset: tuple[float, float] = (0.1, 0.5)   # metres from the mapping path (min, max)
    query_angle: float = 15.0                # degrees, largest rotation off the mapping path
    supersample: int = 1
    texture_size: int = 512

    def __post_init__(self):
        set_ = object.__setattr__
        try:
            set_(self, "room_size", _vec(self.room_size))
            set_(self, "query_offset", _vec(self.query_offset, 2))
            for f in ("width", "height", "n_mapping", "n_query", "seed", "supersample", "texture_size"):
                set_(self, f, int(getattr(self, f)))
            set_(self, "focal", float(self.focal))
            set_(self, "query_angle", float(self.query_angle))
        except (TypeError, ValueError) as e:
            raise DataError(f"bad synthetic config: {e}") from None
        if self.world not in _WORLDS:
            raise DataError(f"unknown synthetic world {self.world!r}; known: {', '.join(_WORLDS)}")
        if self.width < 8 or self.height < 8 or not self.focal > 0:
            raise DataError(f"bad synthetic camera {self.width}x{self.height} f={self.focal}")
        if self.n_mapping < 1 or self.n_query < 0:
            raise DataError("a synthetic scene needs n_mapping >= 1 and n_query >= 0")
        if not 0 <= self.query_offset[0] <= self.query_offset[1]:
            raise DataError(f"query_offset must be (min, max) with 0 <= min <= max, got {self.query_offset}")

    def camera(self) -> Camera:
        return Camera.pinhole(self.focal, self.focal, self.width / 2, self.height / 2, self.width, self.height)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> SyntheticConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"unknown synthetic config keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


_WORLDS = {"room": (lambda cfg: room_world(cfg.room_size), room_trajectory)}


def build_world(config: SyntheticConfig) -> World:
    return _WORLDS[config.world][0](config)


def _scene_qt(config: SyntheticConfig, world: World) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(role, q_wxyz, t) of every frame: the quaternion written to the manifest is
    the one the rendered pose is built from, so files and renders agree bit for bit."""
    mapping = _WORLDS[config.world][1](world, config.n_mapping, config.seed)
    queries = query_poses(world, mapping, config.n_query, config.seed, config.query_offset,
                          config.query_angle)
    return [("mapping", p.q, p.t) for p in mapping] + [("query", p.q, p.t) for p in queries]


def scene_poses(config: SyntheticConfig, world: World | None = None) -> tuple[list[Pose], list[Pose]]:
    """(mapping poses, query poses) of a config, exactly as `generate_scene` writes
    them (built from the stored quaternions)."""
    world = build_world(config) if world is None else world
    qt = _scene_qt(config, world)
    return ([Pose.from_qt(q, t) for role, q, t in qt if role == "mapping"],
            [Pose.from_qt(q, t) for role, q, t in qt if role == "query"])


def _write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise DataError(f"cannot write {path}")


def depth_to_png(depth: np.ndarray) -> np.ndarray:
    """Metric depth to uint16 millimetres (0 = no surface or beyond 65.535 m)."""
    mm = np.round(np.asarray(depth, np.float64) / DEPTH_SCALE)
    return np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)


def generate_scene(out_dir, config: SyntheticConfig = SyntheticConfig(), *, overwrite: bool = False,
                   progress: bool | None = None) -> Scene:
    """Render the scene of `config` into `out_dir` and return it (via the importer).

    Writes `mapping/NNNN.png`, `query/NNNN.png` (RGB), `depth/<same>` (16-bit PNG,
    millimetres, 0 = no surface) and `vloc_synthetic.json`. Everything is written to
    a temporary folder beside `out_dir` and renamed into place at the end. If
    `out_dir` already holds the scene of the same config it is returned as is; a
    different or foreign `out_dir` is an error unless `overwrite`. `progress`:
    tqdm bar (default: when stderr is a terminal)."""
    out_dir = Path(out_dir)
    if not isinstance(config, SyntheticConfig):
        raise DataError(f"config must be a SyntheticConfig, got {type(config).__name__}")
    if out_dir.exists() and not overwrite:
        if (out_dir / MANIFEST).is_file():
            if _same_scene(out_dir, config):
                return _fmt.load(out_dir)
            raise DataError(f"{out_dir} holds a synthetic scene of another config or renderer "
                            f"version; pass overwrite=True to replace it")
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise DataError(f"{out_dir} exists and is not an empty folder")
    world = build_world(config)
    camera = config.camera()
    jobs, count = [], {}
    for role, q, t in _scene_qt(config, world):
        count[role] = count.get(role, -1) + 1
        jobs.append((f"{role}/{count[role]:04d}.png", role, q, t))
    texture_atlas(world.textures, config.texture_size)   # load the photos before the progress bar
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        from tqdm import tqdm
        show = sys.stderr.isatty() if progress is None else bool(progress)
        records = []
        for name, role, q, t in tqdm(jobs, desc=f"rendering {config.name}", unit="frame",
                                     disable=not show or len(jobs) < 2, leave=False):
            pose = Pose.from_qt(q, t)
            rgb, depth = render(world, camera, pose, supersample=config.supersample,
                                texture_size=config.texture_size)
            _write_png(tmp / name, rgb)
            _write_png(tmp / "depth" / name, depth_to_png(depth))
            records.append({"name": name, "image": name, "depth": f"depth/{name}", "role": role,
                            "cam_from_world": {"qvec_wxyz": q.tolist(), "t": t.tolist()}})
        manifest = {
            "format": _fmt.FORMAT_TAG, "version": _fmt.FORMAT_VERSION,
            "generator": "vloc.datasets.synthetic",
            "render_version": RENDER_VERSION,
            "config": config.to_dict(),
            "camera": {"model": camera.model, "width": camera.width, "height": camera.height,
                       "params": list(camera.params)},
            "depth_scale": DEPTH_SCALE,
            "depth": "z-depth along the optical axis, 16-bit PNG in millimetres, 0 = no surface",
            "world": {"kind": world.kind, "up": [0.0, 0.0, 1.0], "quads": len(world.quads),
                      "textures": list(world.textures)},
            "frames": records,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        old = None
        if out_dir.exists() and overwrite:
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, old / "scene")
        try:
            if out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            os.replace(tmp, out_dir)
        except OSError:
            # another process finished the same scene first: keep theirs
            if (out_dir / MANIFEST).is_file() and _same_scene(out_dir, config):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise DataError(f"cannot move the generated scene into {out_dir}: it appeared "
                                f"meanwhile with other content") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _fmt.load(out_dir)


def _same_scene(root: Path, config: SyntheticConfig) -> bool:
    m = _fmt.read_manifest(root)
    return m.get("config") == config.to_dict() and m.get("render_version") == RENDER_VERSION
