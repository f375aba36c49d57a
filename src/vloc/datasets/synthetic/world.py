"""Geometry and lighting of the synthetic worlds: textured rectangles (`Quad`),
camera obstacles (`Block`), lights and `shade()`, the `World` and `room_world()`."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ...errors import DataError
from .textures import PHOTOS

__all__ = ["Block", "DirectionalLight", "Lighting", "PointLight", "Quad", "World", "box_quads",
           "rect", "room_world", "shade"]

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
    independent). `points` may be None where there are no point lights."""
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
        w = np.asarray(w, np.float32)
        light += (w[:, None] if w.ndim else w) * np.asarray(L.color, np.float32)
    return albedo * light * np.float32(lighting.exposure)


# ---------------------------------------------------------------------------
# worlds
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    """Textured quads, their lighting, and where cameras may be: inside the box
    [free_min, free_max] and outside every `obstacles` block.

    Large worlds set a finite `view_distance` (metres from the camera centre):
    farther surfaces are not seen (background), quads are one-sided (seen from the
    front only) and the renderer ray-casts only the quads near the camera and in
    front of it. `fog` = (start, end) metres fades surfaces into the background
    colour between those distances (smoothstep)."""

    quads: tuple[Quad, ...]
    lighting: Lighting = Lighting()
    free_min: tuple[float, float, float] = (-np.inf, -np.inf, -np.inf)
    free_max: tuple[float, float, float] = (np.inf, np.inf, np.inf)
    obstacles: tuple[Block, ...] = ()
    background: tuple[float, float, float] = (0.62, 0.74, 0.88)   # rays that hit nothing
    kind: str = "custom"
    view_distance: float = math.inf
    fog: tuple[float, float] | None = None
    # appearance conditions (conditions.py): albedo_hook(quad, albedo (M, 3) float32, X, Y)
    # -> albedo, with X, Y the level-0 texel coordinates of the samples; None: unchanged
    albedo_hook: object = None

    def __post_init__(self):
        object.__setattr__(self, "quads", tuple(self.quads))
        object.__setattr__(self, "obstacles", tuple(self.obstacles))
        if not self.quads:
            raise DataError("a world needs at least one quad")
        try:
            object.__setattr__(self, "view_distance", float(self.view_distance))
        except (TypeError, ValueError):
            raise DataError(f"view_distance must be a number, got {self.view_distance!r}") from None
        if not self.view_distance > 0:
            raise DataError(f"view_distance must be positive, got {self.view_distance}")
        if self.fog is not None:
            fog = _vec(self.fog, 2)
            if not 0 <= fog[0] < fog[1]:
                raise DataError(f"fog must be (start, end) metres with 0 <= start < end, got {self.fog}")
            object.__setattr__(self, "fog", fog)

    @cached_property
    def quad_grid(self):
        """The spatial index of the quads (built on first use, for culling)."""
        from .culling import QuadGrid
        return QuadGrid(self.quads)

    @cached_property
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

    def with_albedo_hook(self, hook) -> World:
        """The same geometry with another surface appearance (see `albedo_hook`)."""
        return replace(self, albedo_hook=hook)


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

