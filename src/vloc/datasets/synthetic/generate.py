"""Synthetic scenes on disk: `SyntheticConfig` and `generate_scene()`, which renders
the mapping and query frames, their depth and the manifest the "synthetic" importer
reads back."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..._libs import cv2
from ...configs import check_keys
from ...errors import DataError
from ...geometry import Camera, Pose
from ..importers import synthetic_format as _fmt
from ..scene import Scene
from .conditions import CONDITION_NAMES, CONDITION_VERSION, render_condition
from .rendering import RENDER_VERSION, render
from .textures import texture_atlas
from .trajectory import cover_poses, query_poses, room_trajectory
from .world import World, _vec, room_world

__all__ = ["DEPTH_SCALE", "MANIFEST", "SyntheticConfig", "build_world", "depth_to_png",
           "generate_scene", "scene_poses"]

MANIFEST = _fmt.MANIFEST
DEPTH_SCALE = 0.001          # depth PNG value * DEPTH_SCALE = metres


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
    query_offset: tuple[float, float] = (0.1, 0.5)   # path layout: metres from the mapping path (min, max)
    query_angle: float = 15.0                # path layout: degrees, largest rotation off the mapping path
    supersample: int = 1
    texture_size: int = 512
    # "path": mapping on two loops, queries near them; "cover": mapping and queries
    # spread over the free space, the queries independent of n_mapping
    layout: str = "path"
    # appearance of the query frames (conditions.py: day, low-sun, dusk, night, season,
    # noise-blur); mapping frames are always rendered by day. Same geometry and depth.
    condition: str = "day"

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
        if self.layout not in _LAYOUTS:
            raise DataError(f"unknown synthetic layout {self.layout!r}; known: {', '.join(_LAYOUTS)}")
        if self.condition not in CONDITION_NAMES:
            raise DataError(f"unknown synthetic condition {self.condition!r}; known: {', '.join(CONDITION_NAMES)}")
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
        if d["condition"] == "day":     # manifests of day scenes stay as they were
            del d["condition"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> SyntheticConfig:
        check_keys(cls, d, "synthetic config keys", DataError)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


_WORLDS = {"room": (lambda cfg: room_world(cfg.room_size), room_trajectory)}
_LAYOUTS = ("path", "cover")


def build_world(config: SyntheticConfig) -> World:
    return _WORLDS[config.world][0](config)


def _scene_qt(config: SyntheticConfig, world: World) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(role, q_wxyz, t) of every frame: the quaternion written to the manifest is
    the one the rendered pose is built from, so files and renders agree bit for bit."""
    if config.layout == "cover":        # queries from their own stream: the same for every n_mapping
        mapping = cover_poses(world, config.n_mapping, config.seed, stream=2)
        queries = cover_poses(world, config.n_query, config.seed, stream=3)
    else:
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
                   progress: bool | None = None, mapping_from=None) -> Scene:
    """Render the scene of `config` into `out_dir` and return it (via the importer).

    Writes `mapping/NNNN.png`, `query/NNNN.png` (RGB), `depth/<same>` (16-bit PNG,
    millimetres, 0 = no surface) and `vloc_synthetic.json`. Everything is written to
    a temporary folder beside `out_dir` and renamed into place at the end. If
    `out_dir` already holds the scene of the same config it is returned as is; a
    different or foreign `out_dir` is an error unless `overwrite`. `progress`:
    tqdm bar (default: when stderr is a terminal). Query frames are rendered under
    `config.condition` (seeded by `config.seed` and the query's index), mapping frames
    by day. `mapping_from`: a scene of the same config but another condition whose
    mapping frames (identical) are copied instead of rendered."""
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
        jobs.append((f"{role}/{count[role]:04d}.png", role, q, t, count[role]))
    texture_atlas(world.textures, config.texture_size)   # load the photos before the progress bar
    reuse = _reusable_mapping(mapping_from, config)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        from tqdm import tqdm
        show = sys.stderr.isatty() if progress is None else bool(progress)
        records = []
        for name, role, q, t, index in tqdm(jobs, desc=f"rendering {config.name}", unit="frame",
                                     disable=not show or len(jobs) < 2, leave=False):
            pose = Pose.from_qt(q, t)
            if role == "mapping" and name in reuse:
                _link_or_copy(reuse[name][0], tmp / name)
                _link_or_copy(reuse[name][1], tmp / "depth" / name)
            else:
                if role == "query" and config.condition != "day":
                    rgb, depth = render_condition(world, camera, pose, config.condition, seed=config.seed,
                                                  frame=index, supersample=config.supersample,
                                                  texture_size=config.texture_size)
                else:
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
            **({"condition_version": CONDITION_VERSION} if config.condition != "day" else {}),
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


def _reusable_mapping(source, config: SyntheticConfig) -> dict[str, tuple[Path, Path]]:
    """{mapping frame name: (image, depth) paths} of the scene at `source` when it was made by
    the same renderer from `config` but for its condition; else {}."""
    if source is None:
        return {}
    source = Path(source)
    if not (source / MANIFEST).is_file():
        return {}
    m = _fmt.read_manifest(source)
    try:
        stored = SyntheticConfig.from_dict(m.get("config"))
    except (DataError, TypeError, AttributeError):
        return {}
    if m.get("render_version") != RENDER_VERSION or replace(stored, condition=config.condition) != config:
        return {}
    out = {}
    for fr in m.get("frames", []):
        if fr.get("role") != "mapping" or not fr.get("depth"):
            continue
        img, depth = source / fr["image"], source / fr["depth"]
        if img.is_file() and depth.is_file():
            out[fr["name"]] = (img, depth)
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _same_scene(root: Path, config: SyntheticConfig) -> bool:
    m = _fmt.read_manifest(root)
    stored = m.get("config")
    try:        # through from_dict: a manifest written before a field existed gets its default
        same = isinstance(stored, dict) and SyntheticConfig.from_dict(stored) == config
    except (DataError, TypeError):
        return False
    if config.condition != "day" and m.get("condition_version") != CONDITION_VERSION:
        return False
    return same and m.get("render_version") == RENDER_VERSION
