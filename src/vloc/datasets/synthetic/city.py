"""A synthetic city: a street grid of textured box buildings (`city_world`) and
street-level camera poses for mapping (`city_mapping_poses`, evenly along every
street) and queries (`city_query_poses`, random positions and views on the streets).

The city is centred at the origin, metric, z up, the road at z = 0. Streets run
along x and y (jittered positions and widths); between them lie blocks whose
edges are lined with buildings, and a ring of buildings faces the outer streets.
Each building has its own photos, tint, texel size, mirroring seed, offsets and
height, so facades differ locally. Beyond `view_distance` the city fades into a
hazy sky; the renderer then only ray-casts nearby quads."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import DataError
from ...geometry import Pose
from .rendering import raycast
from .textures import PHOTOS
from .world import Block, DirectionalLight, Lighting, Quad, World, rect

__all__ = ["CityWorld", "Street", "city_mapping_poses", "city_query_poses", "city_world"]

FACADE_PHOTOS = tuple(p for p in PHOTOS if p not in ("grass", "gravel"))
SIDEWALK = 3.0            # metres between a block's edge and its buildings
RING_DEPTH = 30.0         # depth of the ring of blocks around the outer streets
KERB = 0.15               # blocks (pavement) are raised above the road


@dataclass(frozen=True)
class Street:
    """A straight street along x (`axis` 0) or y (1): centre line at `coord` on the
    other axis, from `start` to `end` along its own axis, `width` metres wide."""

    axis: int
    coord: float
    width: float
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start

    def point(self, s, lateral) -> np.ndarray:
        """(N, 2) x-y points at `s` metres along the street and `lateral` metres left of
        its centre line (looking along +axis)."""
        s, lateral = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(lateral, np.float64))
        along, across = self.start + s, self.coord + lateral * (1.0 if self.axis == 0 else -1.0)
        return np.stack([along, across] if self.axis == 0 else [across, along], axis=-1)

    @property
    def heading(self) -> float:
        """Direction of +axis (radians from +x towards +y)."""
        return 0.0 if self.axis == 0 else math.pi / 2


@dataclass(frozen=True)
class CityWorld(World):
    """A `World` with its streets (where cameras go) and which quads are facades."""

    streets: tuple[Street, ...] = ()
    facade: tuple[bool, ...] = ()

    def on_street(self, points, margin: float = 0.0) -> np.ndarray:
        """Whether each (N, 2+) point's x-y lies on a street, `margin` metres from its edges."""
        p = np.atleast_2d(np.asarray(points, np.float64))
        ok = np.zeros(len(p), bool)
        for st in self.streets:
            a, b = p[:, st.axis], p[:, 1 - st.axis]
            ok |= (np.abs(b - st.coord) <= st.width / 2 - margin) & (a >= st.start) & (a <= st.end)
        return ok


def _streets(size_m: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Centre lines and widths of the streets along one axis (outer ones unjittered)."""
    pitch = 108.0
    n = max(int(math.ceil(size_m / pitch)), 1)
    coord = (np.arange(n + 1) - n / 2) * pitch
    coord[1:-1] += rng.uniform(-8.0, 8.0, n - 1)
    return coord, rng.uniform(14.0, 22.0, n + 1)


def _row(rng, length: float) -> list[tuple[float, float]]:
    """(start, width) of buildings along a block edge `length` metres long, with
    occasional gaps."""
    out, pos = [], 0.0
    while length - pos >= 8.0:
        w = float(rng.uniform(12.0, 34.0))
        if length - pos - w < 10.0:          # no sliver at the end
            w = length - pos
        out.append((pos, w))
        pos += w + (float(rng.uniform(2.0, 7.0)) if rng.uniform() < 0.3 else 0.0)
    return out


def _building(rng, lo, hi, i: int) -> tuple[Block, list[Quad]]:
    """One box building on the x-y rectangle [lo, hi] with its own facade look."""
    h = float(8.0 + 32.0 * rng.uniform() ** 2)
    blk = Block(tuple((np.add(lo, hi) / 2).tolist()), (hi[0] - lo[0], hi[1] - lo[1], h))
    photos = tuple(rng.choice(FACADE_PHOTOS, size=int(rng.integers(2, 5)), replace=False).tolist())
    texel = float(rng.uniform(0.012, 0.03))               # one photo spans 6-15 m
    tint = rng.uniform(0.72, 1.05, 3)
    tint = tuple((tint / max(tint.max(), 1.0)).tolist())
    seed = int(rng.integers(1 << 30))
    cx, cy = blk.center
    sx, sy = blk.size[:2]
    z = np.array([0.0, 0.0, 1.0])
    quads = []
    for k, (n, width, depth) in enumerate((((1, 0, 0), sy, sx), ((-1, 0, 0), sy, sx),
                                           ((0, 1, 0), sx, sy), ((0, -1, 0), sx, sy))):
        n = np.array(n, np.float64)
        centre = np.array([cx, cy, h / 2]) + n * depth / 2
        quads.append(rect(centre, n, z, width, h, photos, texel=texel, tint=tint, seed=seed + 7 * k,
                          offset=tuple(rng.uniform(0.0, 15.0, 2).tolist()), name=f"building{i}/side{k}"))
    return blk, quads


def _block(rng, lo, hi, sides, buildings: list, quads: list) -> None:
    """Buildings along the `sides` ("s", "n", "w", "e") of the block [lo, hi]."""
    x0, y0 = lo[0] + SIDEWALK, lo[1] + SIDEWALK
    x1, y1 = hi[0] - SIDEWALK, hi[1] - SIDEWALK
    room = min(x1 - x0, y1 - y0)
    if room < 10.0:
        return
    deep = {s: float(min(rng.uniform(10.0, 20.0), room / 2 - 1.0 if len(sides) > 1 else room)) for s in "snwe"}
    spans = {"s": (x0, x1), "n": (x0, x1),
             "w": (y0 + deep["s"] * ("s" in sides), y1 - deep["n"] * ("n" in sides))}
    spans["e"] = spans["w"]
    for side in sides:
        a, b = spans[side]
        for start, width in _row(rng, b - a):
            s0, s1 = a + start, a + start + width
            d = deep[side] + float(rng.uniform(-2.0, 2.0)) * (len(sides) == 1)
            rect_lo, rect_hi = {"s": ((s0, y0), (s1, y0 + d)), "n": ((s0, y1 - d), (s1, y1)),
                                "w": ((x0, s0), (x0 + d, s1)), "e": ((x1 - d, s0), (x1, s1))}[side]
            blk, qs = _building(rng, rect_lo, rect_hi, len(buildings))
            buildings.append(blk)
            quads += qs


def city_world(size_m: float = 1000.0, seed: int = 0, *, view_distance: float = 100.0) -> CityWorld:
    """A street grid covering at least `size_m` x `size_m` metres (centred at the
    origin): blocks ~90 m, streets 14-22 m wide, 8-40 m high buildings; seeded.
    Surfaces beyond `view_distance` metres are not seen (faded into haze from
    half that distance)."""
    try:
        size_m, seed, view_distance = float(size_m), int(seed), float(view_distance)
    except (TypeError, ValueError) as e:
        raise DataError(f"bad city parameters: {e}") from None
    if not 100.0 <= size_m <= 20000.0:
        raise DataError(f"city size must be 100 to 20000 m, got {size_m}")
    if not 20.0 <= view_distance <= 1000.0:
        raise DataError(f"city view distance must be 20 to 1000 m, got {view_distance}")
    rng = np.random.default_rng([seed, 17])
    cx, wx = _streets(size_m, rng)
    cy, wy = _streets(size_m, rng)
    lo = np.array([cx[0] - wx[0] / 2, cy[0] - wy[0] / 2])
    hi = np.array([cx[-1] + wx[-1] / 2, cy[-1] + wy[-1] / 2])
    streets = tuple(Street(0, float(c), float(w), float(lo[0]), float(hi[0])) for c, w in zip(cy, wy)) \
        + tuple(Street(1, float(c), float(w), float(lo[1]), float(hi[1])) for c, w in zip(cx, wx))
    # block edges along each axis: the ring, then between consecutive streets
    ex = [(lo[0] - RING_DEPTH, lo[0])] + [(cx[i] + wx[i] / 2, cx[i + 1] - wx[i + 1] / 2)
                                         for i in range(len(cx) - 1)] + [(hi[0], hi[0] + RING_DEPTH)]
    ey = [(lo[1] - RING_DEPTH, lo[1])] + [(cy[i] + wy[i] / 2, cy[i + 1] - wy[i + 1] / 2)
                                         for i in range(len(cy) - 1)] + [(hi[1], hi[1] + RING_DEPTH)]
    z = np.array([0.0, 0.0, 1.0])
    y_axis = np.array([0.0, 1.0, 0.0])
    margin = RING_DEPTH + 2 * view_distance
    span = hi - lo + 2 * margin
    quads = [rect((*((lo + hi) / 2), 0.0), z, y_axis, span[0], span[1], ("gravel",), texel=0.02,
                  tint=(0.4, 0.4, 0.42), seed=seed, name="road")]
    buildings: list[Block] = []
    last = len(ex) - 1
    for i, (x0, x1) in enumerate(ex):
        for j, (y0, y1) in enumerate(ey):
            ring = i in (0, last) or j in (0, last)
            if ring and i in (0, last) and j in (0, last):
                sides = ""                                        # ring corners: pavement only
            elif ring:
                sides = "n" if j == 0 else "s" if j == last else "e" if i == 0 else "w"
            else:
                sides = "snwe"
            quads.append(rect(((x0 + x1) / 2, (y0 + y1) / 2, KERB), z, y_axis, x1 - x0, y1 - y0,
                              ("brick", "gravel"), texel=0.005, tint=(0.82, 0.78, 0.74),
                              seed=seed * 7919 + 31 * i + j, name=f"block{i}_{j}"))
            _block(rng, (x0, y0), (x1, y1), sides, buildings, quads)
    el, az = math.radians(40.0), math.radians(30.0 + 120.0 * (seed % 3))
    sun = DirectionalLight((-math.cos(el) * math.cos(az), -math.cos(el) * math.sin(az), -math.sin(el)),
                           (0.62, 0.58, 0.50))
    lighting = Lighting(ambient=(0.50, 0.52, 0.56), lights=(sun,))
    return CityWorld(quads=tuple(quads), lighting=lighting, free_min=(float(lo[0]), float(lo[1]), 0.0),
                     free_max=(float(hi[0]), float(hi[1]), 50.0), obstacles=tuple(buildings),
                     background=(0.66, 0.76, 0.88), kind="city", view_distance=view_distance,
                     fog=(0.5 * view_distance, view_distance), streets=streets,
                     facade=tuple(q.name.startswith("building") for q in quads))


# ---------------------------------------------------------------------------
# camera poses
# ---------------------------------------------------------------------------

def _check_city(world) -> CityWorld:
    if not isinstance(world, CityWorld) or not world.streets:
        raise DataError(f"city poses need a city world (city_world()), got {getattr(world, 'kind', world)!r}")
    return world


END = 3.0                 # cameras keep this far from the ends of the streets


def _usable(world: CityWorld) -> np.ndarray:
    return np.array([st.length - 2 * END for st in world.streets])


def _locate(world: CityWorld, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(street index, metres along it) of positions `s` along all streets laid end to
    end (each without its last `END` metres at either end)."""
    lengths = _usable(world)
    ends = np.cumsum(lengths)
    k = np.minimum(np.searchsorted(ends, s, side="right"), len(ends) - 1)
    return k, END + s - (ends[k] - lengths[k])


def _poses(world: CityWorld, k, s, lateral, height, yaw, pitch, roll) -> list[Pose]:
    xy = np.array([world.streets[ki].point(si, li) for ki, si, li in zip(k, s, lateral)]).reshape(-1, 2)
    centres = np.c_[xy, height]
    bad = ~world.is_free(centres, margin=1.0) | ~world.on_street(centres, margin=1.0)
    if bad.any():
        raise DataError(f"city camera at {np.round(centres[np.argmax(bad)], 2).tolist()} is off the street")
    return _views(centres, np.asarray(yaw, np.float64), np.asarray(pitch, np.float64),
                  np.asarray(roll, np.float64))


def _views(centres: np.ndarray, yaw, pitch, roll) -> list[Pose]:
    """`trajectory.pose_from_view` for many cameras at once (level-ish views)."""
    cp, sp = np.cos(pitch), np.sin(pitch)
    f = np.stack([cp * np.cos(yaw), cp * np.sin(yaw), sp], axis=1)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], axis=1)   # unit(f x z)
    down = np.cross(f, right)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    R = np.stack([c * right + s * down, -s * right + c * down, f], axis=1)
    t = -np.einsum("nij,nj->ni", R, centres)
    return [Pose(r, tt) for r, tt in zip(R, t)]


def city_mapping_poses(world: CityWorld, n: int, seed: int = 0) -> list[Pose]:
    """`n` street-level mapping poses evenly spaced along all streets (laid end to
    end), 1.5-2 m high, across the street's width; the view cycles through along the
    street, obliquely left / right at the facades and back, with jitter; seeded."""
    world = _check_city(world)
    n = int(n)
    if n < 1:
        return []
    rng = np.random.default_rng([seed, 21])
    total = float(_usable(world).sum())
    k, s = _locate(world, (np.arange(n) + 0.5) * (total / n))
    width = np.array([world.streets[ki].width for ki in k])
    heading = np.array([world.streets[ki].heading for ki in k])
    turn = np.radians([0.0, 40.0, -40.0, 180.0, 140.0, -140.0])[np.arange(n) % 6]
    yaw = heading + turn + np.radians(rng.uniform(-12.0, 12.0, n))
    return _poses(world, k, s, width * rng.uniform(-0.3, 0.3, n), rng.uniform(1.5, 2.0, n), yaw,
                  np.radians(rng.uniform(3.0, 12.0, n)), np.radians(rng.uniform(-2.0, 2.0, n)))


def city_query_poses(world: CityWorld, n: int, seed: int = 0, *, min_facade: float = 0.3) -> list[Pose]:
    """`n` query poses at random places on the streets, 1.4-2.1 m high, heading
    within 65 degrees of either way along the street, pitch 0..12, roll -3..3
    degrees; each sees facades in at least `min_facade` of a coarse view; seeded
    (the first k of n queries do not depend on n)."""
    world = _check_city(world)
    n = int(n)
    if n < 1:
        return []
    from ...geometry import Camera
    probe = Camera.pinhole(20.0, 20.0, 16.0, 12.0, 32, 24)      # 77 degrees wide, coarse
    facade = np.array(world.facade + (False,))                  # index -1: sky
    rng = np.random.default_rng([seed, 22])
    total = float(_usable(world).sum())
    batch = 64
    out: list[Pose] = []
    for _ in range(max(4 * n // batch, 50)):
        k, s = _locate(world, rng.uniform(0.0, total, batch))
        width = np.array([world.streets[ki].width for ki in k])
        heading = np.array([world.streets[ki].heading for ki in k])
        yaw = heading + np.pi * rng.integers(0, 2, batch) + np.radians(rng.uniform(-65.0, 65.0, batch))
        poses = _poses(world, k, s, width * rng.uniform(-0.35, 0.35, batch), rng.uniform(1.4, 2.1, batch),
                       yaw, np.radians(rng.uniform(0.0, 12.0, batch)), np.radians(rng.uniform(-3.0, 3.0, batch)))
        for pose in poses:
            if facade[raycast(world, probe, pose)[1]].mean() >= min_facade:
                out.append(pose)
                if len(out) == n:
                    return out
    raise DataError(f"could place only {len(out)} of {n} query cameras seeing facades")
