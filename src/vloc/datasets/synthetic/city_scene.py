"""The synthetic city on disk: `CityConfig` and `generate_city()`, which renders up to
hundreds of thousands of low-resolution frames in forked worker processes into the
synthetic scene format (read back by the "synthetic" importer).

Restartable: images are written under temporary names and renamed, so a file that
exists is complete; a rerun with the same config renders only the missing ones.
`.vloc_city_pending.json` marks a folder in progress; the manifest is written last."""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..._libs import cv2
from ...configs import check_keys
from ...errors import DataError
from ...geometry import Camera, Pose
from ...progress import progress_bar
from ..importers import synthetic_format as _fmt
from ..scene import Scene
from .city import CityWorld, city_mapping_poses, city_query_poses, city_world
from .rendering import RENDER_VERSION, render
from .textures import texture_atlas

__all__ = ["CITY_DEPTH_SCALE", "CityConfig", "city_scene_poses", "generate_city"]

MANIFEST = _fmt.MANIFEST
PENDING = ".vloc_city_pending.json"
CITY_DEPTH_SCALE = 0.002     # depth PNG value * scale = metres (up to 131 m)
PER_FOLDER = 1000            # images per sub-folder
CHUNK = 48                   # images per task of a worker


@dataclass(frozen=True)
class CityConfig:
    """Everything that defines a generated city scene (same config -> identical files)."""

    name: str = "synthetic_city"
    size_m: float = 1000.0                   # the street grid covers at least size_m x size_m
    n_mapping: int = 10000
    n_query: int = 500
    width: int = 320
    height: int = 240
    focal: float = 250.0                     # PINHOLE fx = fy (65 degrees wide at 320 px)
    seed: int = 0
    view_distance: float = 100.0             # metres; farther surfaces fade into the sky
    write_depth: bool = False
    image_format: str = "jpg"                # "jpg" or "png"
    jpeg_quality: int = 90
    texture_size: int = 512

    def __post_init__(self):
        set_ = object.__setattr__
        try:
            for f in ("n_mapping", "n_query", "width", "height", "seed", "jpeg_quality", "texture_size"):
                set_(self, f, int(getattr(self, f)))
            for f in ("size_m", "focal", "view_distance"):
                set_(self, f, float(getattr(self, f)))
        except (TypeError, ValueError) as e:
            raise DataError(f"bad city config: {e}") from None
        if not isinstance(self.write_depth, bool):
            raise DataError(f"city config: write_depth must be true or false, got {self.write_depth!r}")
        if self.image_format not in ("jpg", "png"):
            raise DataError(f"city config: image_format must be 'jpg' or 'png', got {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise DataError(f"city config: jpeg_quality must be 1..100, got {self.jpeg_quality}")
        if self.width < 8 or self.height < 8 or not (self.focal > 0 and math.isfinite(self.focal)):
            raise DataError(f"bad city camera {self.width}x{self.height} f={self.focal}")
        if self.n_mapping < 1 or self.n_query < 0:
            raise DataError("a city scene needs n_mapping >= 1 and n_query >= 0")

    def camera(self) -> Camera:
        return Camera.pinhole(self.focal, self.focal, self.width / 2, self.height / 2, self.width, self.height)

    def world(self) -> CityWorld:
        return city_world(self.size_m, self.seed, view_distance=self.view_distance)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CityConfig:
        check_keys(cls, d, "city config keys", DataError)
        return cls(**d)


def _scene_qt(config: CityConfig, world: CityWorld) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(role, q_wxyz, t) of every frame; renders use the pose rebuilt from these."""
    mapping = city_mapping_poses(world, config.n_mapping, config.seed)
    queries = city_query_poses(world, config.n_query, config.seed)
    return [("mapping", p.q, p.t) for p in mapping] + [("query", p.q, p.t) for p in queries]


def city_scene_poses(config: CityConfig, world: CityWorld | None = None) -> tuple[list[Pose], list[Pose]]:
    """(mapping poses, query poses) exactly as `generate_city` writes them."""
    qt = _scene_qt(config, config.world() if world is None else world)
    return ([Pose.from_qt(q, t) for role, q, t in qt if role == "mapping"],
            [Pose.from_qt(q, t) for role, q, t in qt if role == "query"])


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

def _image_name(role: str, i: int, ext: str) -> str:
    return f"{role}/{i // PER_FOLDER:03d}/{i:06d}.{ext}"


def _complete(path: Path) -> bool:
    """Whether `path` is a whole JPEG or PNG file (its end marker is there)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(-12, os.SEEK_END)
            tail = f.read()
    except OSError:
        return False
    if head[:2] == b"\xff\xd8":
        return tail[-2:] == b"\xff\xd9"
    return head == b"\x89PNG\r\n\x1a\n" and tail[4:8] == b"IEND"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _encode(img: np.ndarray, ext: str, quality: int) -> bytes:
    if img.ndim == 3:
        img = np.ascontiguousarray(img[..., ::-1])            # BGR for OpenCV
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == "jpg" else []
    ok, buf = cv2.imencode(f".{ext}", img, params)
    if not ok:
        raise DataError(f"cannot encode a {ext} image")
    return buf.tobytes()


# ---------------------------------------------------------------------------
# rendering in forked workers
# ---------------------------------------------------------------------------

_JOB: dict = {}              # set before forking: what the workers render


def _render_chunk(chunk: list[tuple[str, np.ndarray, np.ndarray]]) -> int:
    world, camera, config, root = _JOB["world"], _JOB["camera"], _JOB["config"], _JOB["root"]
    for name, q, t in chunk:
        rgb, depth = render(world, camera, Pose.from_qt(q, t), texture_size=config.texture_size)
        if config.write_depth:
            mm = np.round(depth.astype(np.float64) / CITY_DEPTH_SCALE)
            d16 = np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)
            _write_atomic(root / "depth" / Path(name).with_suffix(".png"), _encode(d16, "png", 0))
        _write_atomic(root / name, _encode(rgb, config.image_format, config.jpeg_quality))
    return len(chunk)


def _render_all(todo: list, workers: int, show: bool, desc: str) -> None:
    chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
    pool, threads = None, cv2.getNumThreads()
    if workers == 1 or len(chunks) < 2:
        results = map(_render_chunk, chunks)
    else:
        # fork (not spawn): the workers inherit the world and the texture atlas. OpenCV's
        # thread pool does not survive a fork: it is stopped while the workers live.
        cv2.setNumThreads(1)
        pool = multiprocessing.get_context("fork").Pool(min(workers, len(chunks)))
        results = pool.imap_unordered(_render_chunk, chunks)
    try:
        with progress_bar(None, desc, enabled=show, total=len(todo)) as bar:
            for n in results:
                bar.update(n)
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
            cv2.setNumThreads(threads)


# ---------------------------------------------------------------------------
# the scene
# ---------------------------------------------------------------------------

def _stamp(config: CityConfig) -> dict:
    return {"config": config.to_dict(), "render_version": RENDER_VERSION}


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _prepare(out_dir: Path, config: CityConfig, overwrite: bool) -> Scene | None:
    """The finished scene when `out_dir` already holds it, else None once `out_dir`
    is ready to (re)start rendering `config` (empty, or a partial run of it)."""
    stamp = _stamp(config)
    if out_dir.exists() and not overwrite:
        if (out_dir / MANIFEST).is_file():
            m = _fmt.read_manifest(out_dir)
            if {k: m.get(k) for k in stamp} != stamp:
                raise DataError(f"{out_dir} holds a synthetic scene of another config or renderer "
                                f"version; pass overwrite=True to replace it")
            try:
                return _fmt.load(out_dir)
            except DataError:            # files missing: render them again
                _write_atomic(out_dir / PENDING, json.dumps(stamp).encode())
                return None
        if (out_dir / PENDING).is_file():
            if _read_json(out_dir / PENDING) != stamp:
                raise DataError(f"{out_dir} holds a partly generated city of another config; "
                                f"pass overwrite=True to replace it")
            return None
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise DataError(f"{out_dir} exists and is not an empty folder")
    if overwrite and out_dir.exists():
        if not out_dir.is_dir():
            raise DataError(f"{out_dir} is not a folder")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / PENDING, json.dumps(stamp).encode())
    return None


def generate_city(out_dir, config: CityConfig = CityConfig(), *, overwrite: bool = False,
                  progress: bool = True, workers: int = 2) -> Scene:
    """Render the city scene of `config` into `out_dir` and return it (via the importer).

    Writes `mapping/KKK/NNNNNN.jpg` and `query/KKK/NNNNNN.jpg` (1000 per folder;
    .png with image_format "png"), `depth/<same>.png` when `write_depth` (16-bit,
    `CITY_DEPTH_SCALE` metres per unit, 0 = no surface) and, last, the manifest
    `vloc_synthetic.json`. `workers` forked processes render chunks of frames. A
    folder with the finished scene of the same config is returned as is; a partial
    run of the same config is resumed (complete files are kept); anything else is
    an error unless `overwrite` (which deletes `out_dir` first)."""
    if not isinstance(config, CityConfig):
        raise DataError(f"config must be a CityConfig, got {type(config).__name__}")
    workers = int(workers)
    if workers < 1:
        raise DataError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    done = _prepare(out_dir, config, overwrite)
    if done is not None:
        return done
    world = config.world()
    camera = config.camera()
    ext = config.image_format
    jobs, records, count = [], [], {"mapping": 0, "query": 0}
    for role, q, t in _scene_qt(config, world):
        name = _image_name(role, count[role], ext)
        count[role] += 1
        jobs.append((name, q, t))
        rec = {"name": name, "image": name, "role": role,
               "cam_from_world": {"qvec_wxyz": q.tolist(), "t": t.tolist()}}
        if config.write_depth:
            rec["depth"] = f"depth/{Path(name).with_suffix('.png').as_posix()}"
        records.append(rec)
    folders = sorted({str(Path(r[k]).parent) for r in records for k in ("image", "depth") if k in r})
    for folder in folders:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for stale in (out_dir / folder).glob(".*.part"):      # left by an interrupted run
            stale.unlink()
    todo = [job for job, rec in zip(jobs, records)
            if not (_complete(out_dir / rec["image"]) and ("depth" not in rec or _complete(out_dir / rec["depth"])))]
    if todo:
        texture_atlas(world.textures, config.texture_size)    # built once, shared by the forks
        world.quad_grid
        _JOB.update(world=world, camera=camera, config=config, root=out_dir)
        try:
            _render_all(todo, workers, progress, f"rendering {config.name}")
        finally:
            _JOB.clear()
    _write_manifest(out_dir, config, world, camera, records)
    (out_dir / PENDING).unlink(missing_ok=True)
    return _fmt.load(out_dir)


def _write_manifest(root: Path, config: CityConfig, world: CityWorld, camera: Camera, records: list) -> None:
    lo, hi = np.array(world.free_min[:2]), np.array(world.free_max[:2])
    head = {
        "format": _fmt.FORMAT_TAG, "version": _fmt.FORMAT_VERSION,
        "generator": "vloc.datasets.synthetic.city",
        **_stamp(config),
        "camera": {"model": camera.model, "width": camera.width, "height": camera.height,
                   "params": list(camera.params)},
        "world": {"kind": world.kind, "up": [0.0, 0.0, 1.0], "quads": len(world.quads),
                  "buildings": len(world.obstacles), "streets": len(world.streets),
                  "street_area": {"min_xy": lo.tolist(), "max_xy": hi.tolist()},
                  "textures": list(world.textures)},
    }
    if config.write_depth:
        head["depth_scale"] = CITY_DEPTH_SCALE
        head["depth"] = "z-depth along the optical axis, 16-bit PNG, depth_scale metres per unit, 0 = no surface"
    # one frame per line: readable, and small for 100k frames
    text = json.dumps(head, indent=1)[:-2] + ',\n "frames": [\n' \
        + ",\n".join("  " + json.dumps(r) for r in records) + "\n ]\n}\n"
    _write_atomic(root / MANIFEST, text.encode())
