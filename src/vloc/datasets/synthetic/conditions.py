"""Appearance conditions of the synthetic worlds: the same geometry rendered under
other lighting, surface appearance and sensor effects, for appearance-change tests
(a map from "day" images, queries from every condition).

A condition changes three independent things, never the geometry, so a frame's
depth is the day depth exactly:

- lighting: another `Lighting` (ambient, sun, lamps, exposure);
- albedo: a `World.albedo_hook` that recolours surfaces (season: snow patches on
  surfaces facing up, autumn colours on some walls);
- sensor: what the camera adds after the scene's radiance is quantised: motion or
  defocus blur, then signal-dependent noise (variance a * I + b in 8-bit units),
  seeded per frame.

Conditions (`CONDITIONS`, in order):

| name | lighting | albedo | sensor |
| --- | --- | --- | --- |
| `day` | the world's own | unchanged | none (the plain render, byte for byte) |
| `low-sun` | warm sun 8 degrees above the horizon, lamps off, dim ambient | unchanged | light noise |
| `dusk` | after sunset: blue skylight (ambient at 1/9), no sun, the two ceiling lamps dim and warm, exposure 2.0 | unchanged | noise (gain) |
| `night` | ambient at 1/30, four warm lamps with a short reach, exposure 1.8 | unchanged | strong noise |
| `season` | the world's own | snow patches on the floor and box tops, autumn colour patches on about half of the walls and box sides | none |
| `noise-blur` | the world's own | unchanged | motion blur (7-13 px) or defocus (radius 2.5-4 px), every other frame, then noise |

Lamps and the sun are placed from the world's bounding box (quads' corners), so
the conditions apply to any room-like world; the room is what they are tuned for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..._libs import cv2
from ...errors import DataError
from ...geometry import Camera, Pose
from .rendering import _tile_hash, render
from .world import DirectionalLight, Lighting, PointLight, Quad, World

__all__ = ["CONDITIONS", "CONDITION_NAMES", "CONDITION_VERSION", "Condition", "apply_sensor", "condition_world",
           "generate_condition_scenes", "render_condition"]


@dataclass(frozen=True)
class Condition:
    """How a condition departs from the day rendering (see the module's table)."""

    name: str
    description: str
    noise_gain: float = 0.0        # a: shot-noise variance per 8-bit grey level
    noise_floor: float = 0.0       # b: read-noise variance (8-bit units squared)
    blur: bool = False             # motion / defocus blur (alternating per frame)


CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("day", "the plain rendering"),
    Condition("low-sun", "low warm sun from one side, dim ambient, lamps off", 0.08, 1.0),
    Condition("dusk", "after sunset: dim blue skylight, no sun, dim warm ceiling lamps, exposure 2.0", 0.6, 6.0),
    Condition("night", "dark ambient, four warm lamps with a short reach, exposure 1.8, sensor noise",
              1.0, 9.0),
    Condition("season", "snow patches on surfaces facing up, autumn colours on some walls"),
    Condition("noise-blur", "day light; motion or defocus blur, then sensor noise", 0.3, 16.0, blur=True),
)}
CONDITION_NAMES: tuple[str, ...] = tuple(CONDITIONS)
# bump when a condition's rendering changes (scenes rendered under an older one are re-made).
# 2: dusk after sunset (1: a red sun at the horizon and ambient at 1/4, brighter than low-sun)
CONDITION_VERSION = 2


def _check(name: str) -> Condition:
    if name not in CONDITIONS:
        raise DataError(f"unknown condition {name!r}; known: {', '.join(CONDITION_NAMES)}")
    return CONDITIONS[name]


def _bounds(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of the world's quads (metres)."""
    c = np.concatenate([q.corners() for q in world.quads])
    return c.min(0), c.max(0)


def _unit(v) -> tuple[float, float, float]:
    v = np.asarray(v, np.float64)
    return tuple(float(x) for x in v / np.linalg.norm(v))


def condition_lighting(world: World, name: str) -> Lighting:
    """The lighting of condition `name` for `world` (the world's own for day, season
    and noise-blur)."""
    _check(name)
    lo, hi = _bounds(world)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    a, b, H = half[0], half[1], hi[2] - lo[2]
    z0 = lo[2]
    if name == "low-sun":        # sun from -x (slightly -y), 8 degrees high: walls facing it glow
        e = math.radians(8.0)
        sun = DirectionalLight(_unit((math.cos(e), 0.35 * math.cos(e), -math.sin(e))), (1.05, 0.80, 0.52))
        return Lighting(ambient=(0.17, 0.16, 0.15), lights=(sun,), exposure=1.0)
    if name == "dusk":           # the sun has set: blue skylight, the ceiling lamps just switched on
        lamps = tuple(PointLight((mid[0] + fx * a, mid[1] + fy * b, z0 + H - 0.25), (0.26, 0.20, 0.12),
                                 falloff=0.5 * max(a, b))
                      for fx, fy in ((0.2, -0.1), (-0.5, 0.4)))
        return Lighting(ambient=(0.05, 0.055, 0.085), lights=lamps, exposure=2.0)
    if name == "night":          # warm lamps, each lighting a few metres around it
        spots = ((0.45, 0.35, 0.9), (-0.5, -0.3, 0.9), (-0.1, 0.75, 0.6), (0.7, -0.6, 0.55))
        reach = 0.18 * max(a, b)
        lamps = tuple(PointLight((mid[0] + fx * a, mid[1] + fy * b, z0 + fz * H), (1.0, 0.72, 0.42),
                                 falloff=reach)
                      for fx, fy, fz in spots)
        return Lighting(ambient=(0.018, 0.018, 0.022), lights=lamps, exposure=1.8)
    return world.lighting


def _value_noise(X: np.ndarray, Y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1] on a unit lattice (bilinear with a smoothstep, hashed corners)."""
    x0, y0 = np.floor(X), np.floor(Y)
    fx, fy = X - x0, Y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    xi, yi = x0.astype(np.int64), y0.astype(np.int64)

    def corner(dx, dy):
        h = _tile_hash(xi + dx + (1 << 20), yi + dy + (1 << 20), seed)
        return (h & np.uint64(0xFFFF)).astype(np.float64) / 65535.0
    top = corner(0, 0) * (1 - fx) + corner(1, 0) * fx
    bottom = corner(0, 1) * (1 - fx) + corner(1, 1) * fx
    return top * (1 - fy) + bottom * fy


@dataclass(frozen=True)
class SeasonHook:
    """`World.albedo_hook` of the season condition (picklable).

    Surfaces facing up (normal z > 0.7: floor, box tops) get snow: patches from two
    octaves of smooth noise (features ~`patch` metres), white where the noise is
    high, a thin dusting elsewhere. Vertical surfaces turn to autumn colours in
    patches of ~`leaves` metres covering about half of them (green to orange and red,
    blue fades), as if covered by turning leaves or repainted."""

    patch: float = 0.35
    leaves: float = 1.2
    snow: tuple[float, float, float] = (0.93, 0.95, 1.0)

    def __call__(self, quad: Quad, albedo: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        n = quad.normal
        if n[2] > 0.7:
            s = self.patch / quad.texel
            v = 0.65 * _value_noise(X / s, Y / s, quad.seed) \
                + 0.35 * _value_noise(X / (0.3 * s), Y / (0.3 * s), quad.seed + 1)
            w = np.clip((v - 0.42) / 0.18, 0.0, 1.0)
            w = (0.15 + 0.85 * w * w * (3 - 2 * w)).astype(np.float32)[:, None]
            return albedo + (np.asarray(self.snow, np.float32) - albedo) * w
        if abs(n[2]) < 0.3:
            s = self.leaves / quad.texel
            w = np.clip((_value_noise(X / s, Y / s, quad.seed + 2) - 0.4) / 0.2, 0.0, 1.0)
            w = (w * w * (3 - 2 * w)).astype(np.float32)
            r, g, b = albedo[:, 0], albedo[:, 1], albedo[:, 2]
            out = albedo.copy()
            out[:, 0] += (np.minimum(0.55 * r + 0.75 * g, 1.0) - r) * w
            out[:, 1] += (0.35 * r + 0.45 * g - g) * w
            out[:, 2] += (0.3 * b - b) * w
            return out
        return albedo


def condition_world(world: World, name: str) -> World:
    """`world` with the lighting and surface appearance of condition `name`; the
    geometry (quads, free space) is the same object's."""
    _check(name)
    if name == "day" or name == "noise-blur":
        return world
    if name == "season":
        return world.with_albedo_hook(SeasonHook())
    return world.with_lighting(condition_lighting(world, name))


def _blur_kernel(frame: int, rng: np.random.Generator) -> np.ndarray:
    """Motion blur (a line of 7-13 px at a random angle) on even frames, defocus (a disk
    of radius 2.5-4 px) on odd ones; normalised to sum 1."""
    if frame % 2 == 0:
        length = rng.uniform(7.0, 13.0)
        angle = rng.uniform(0.0, math.pi)
        size = int(math.ceil(length)) | 1
        yy, xx = (np.mgrid[:size, :size] - size // 2).astype(np.float64)
        d = np.array([math.cos(angle), math.sin(angle)])
        along = np.clip(xx * d[0] + yy * d[1], -(length - 1) / 2, (length - 1) / 2)
        dist = np.hypot(xx - along * d[0], yy - along * d[1])       # to the segment
        k = np.clip(1.0 - dist, 0.0, 1.0).astype(np.float32)
    else:
        r = rng.uniform(2.5, 4.0)
        size = 2 * int(math.ceil(r)) + 1
        yy, xx = np.mgrid[:size, :size] - size // 2
        k = np.clip(r + 0.5 - np.sqrt(xx * xx + yy * yy), 0.0, 1.0).astype(np.float32)
    return k / k.sum()


def apply_sensor(rgb: np.ndarray, name: str, *, seed: int = 0, frame: int = 0) -> np.ndarray:
    """What the camera adds under condition `name` to a rendered uint8 image: blur,
    then Gaussian noise of variance a * I + b (I the 8-bit value), rounded and
    clipped. Seeded by (seed, condition, frame): the same call gives the same bytes.
    Conditions without sensor effects return `rgb` itself."""
    c = _check(name)
    if not c.blur and c.noise_gain == 0 and c.noise_floor == 0:
        return rgb
    rng = np.random.default_rng([int(seed), CONDITION_NAMES.index(name), int(frame), 0x5E05])
    img = rgb.astype(np.float32)
    if c.blur:
        img = cv2.filter2D(img, -1, _blur_kernel(frame, rng), borderType=cv2.BORDER_REFLECT)
    if c.noise_gain or c.noise_floor:
        sigma = np.sqrt(c.noise_gain * np.maximum(img, 0.0) + c.noise_floor)
        img = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_condition(world: World, camera: Camera, cam_from_world: Pose, condition: str = "day", *,
                     seed: int = 0, frame: int = 0, supersample: int = 1,
                     texture_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """`render` under `condition`: (rgb uint8, depth float32). `world` is the day world
    (`condition_world` is applied here); the depth is the day depth exactly (same
    geometry, same ray casting). `seed`, `frame` seed the sensor noise and blur."""
    _check(condition)
    rgb, depth = render(condition_world(world, condition), camera, cam_from_world,
                        supersample=supersample, texture_size=texture_size)
    return apply_sensor(rgb, condition, seed=seed, frame=frame), depth


def generate_condition_scenes(out_dir, config=None, conditions=CONDITION_NAMES, *,
                              progress: bool | None = None) -> dict:
    """One synthetic scene per condition under `out_dir/<condition>`: the same mapping
    frames (day; rendered once, copied into the others) and the same query poses
    rendered under each condition. Returns {condition: Scene}. Scenes already there
    (same config, renderer and condition versions) are reused; synthetic scenes of
    another config or version in these folders are replaced."""
    from .generate import MANIFEST, SyntheticConfig, _same_scene, generate_scene
    config = SyntheticConfig() if config is None else config
    out_dir = Path(out_dir)
    for c in conditions:
        _check(c)

    def make(c, **kw):
        cfg = replace(config, condition=c)
        folder = out_dir / c
        stale = (folder / MANIFEST).is_file() and not _same_scene(folder, cfg)
        return generate_scene(folder, cfg, progress=progress, overwrite=stale, **kw)
    day = make("day")
    return {c: day if c == "day" else make(c, mapping_from=out_dir / "day") for c in conditions}

