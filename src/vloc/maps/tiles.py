"""Tiled maps (Lynen et al. 2020): square tiles on the ground plane (default 150 m,
each extended by an overlap) laid over the mapping cameras; each tile is the structure
map of the cameras inside it (what can be seen from there), stored as one file with its
points and PQ-compressed descriptors (its own FAISS IVF-PQ index). A query loads only
the tiles its position prior touches."""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import h5py
import numpy as np

from ..errors import MapError, VlocError
from ..matching.nn import faiss_threads
from ..progress import progress_bar
from .config import MapConfig
from .extract import extract_to_store
from .mapdir import atomic_map_dir, write_manifest
from .points import read_points

TILES_JSON = "tiles.json"
_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class TiledMapConfig(MapConfig):
    tile_size: float = 150.0          # side of a tile's core square (map units; metres for GPS)
    tile_overlap: float = 25.0        # each tile also holds the points this far beyond its core
    ground_axes: str = "xy"           # the map axes of the ground plane (xz for y-up scenes)
    pq_bytes: int = 32                # bytes per descriptor (FAISS PQ, 8 bits per sub-vector); 0: uncompressed
    geo_registration: dict = field(default_factory=dict)   # {lat, lon[, alt, yaw_deg, scale]}: GPS priors

    def __post_init__(self):
        super().__post_init__()
        if not (self.tile_size > 0 and math.isfinite(self.tile_size)):
            raise VlocError(f"tile_size must be positive, got {self.tile_size}")
        if not 0 <= self.tile_overlap < self.tile_size / 2:
            raise VlocError(f"tile_overlap must be in [0, tile_size/2), got {self.tile_overlap}")
        if len(self.ground_axes) != 2 or set(self.ground_axes) - set(_AXES) or len(set(self.ground_axes)) != 2:
            raise VlocError(f"ground_axes must be two of x, y, z (e.g. xy), got {self.ground_axes!r}")
        if self.pq_bytes < 0:
            raise VlocError(f"pq_bytes must be >= 0, got {self.pq_bytes}")
        if self.geo_registration:
            from ..geometry.geo import GeoRegistration
            GeoRegistration.from_dict(self.geo_registration)


@dataclass(frozen=True)
class TileGrid:
    origin: tuple[float, float]       # ground coordinates of tile (0, 0)'s core corner
    size: float
    overlap: float
    axes: tuple[int, int]
    shape: tuple[int, int]            # tiles along each ground axis

    def to_dict(self) -> dict:
        return {"origin": list(self.origin), "size": self.size, "overlap": self.overlap,
                "axes": list(self.axes), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict) -> TileGrid:
        return cls(tuple(d["origin"]), float(d["size"]), float(d["overlap"]), tuple(d["axes"]), tuple(d["shape"]))

    def bounds(self, i: int, j: int) -> tuple[float, float, float, float]:
        """(min0, min1, max0, max1) of tile (i, j), overlap included."""
        o0, o1 = self.origin
        s, ov = self.size, self.overlap
        return (o0 + i * s - ov, o1 + j * s - ov, o0 + (i + 1) * s + ov, o1 + (j + 1) * s + ov)

    def tiles_of_points(self, g: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
        """For ground points (N, 2): {(i, j): sorted indices of the points tile (i, j) holds}
        (a point near a border is in every tile whose extended square contains it)."""
        origin, s, ov = np.array(self.origin), self.size, self.overlap
        core = np.floor((g - origin) / s).astype(np.int64)
        tile_ids, point_ids = [], []
        for off in ((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)):
            cand = core + np.array(off)
            lo, hi = origin + cand * s - ov, origin + (cand + 1) * s + ov
            ok = (np.all((g >= lo) & (g <= hi), axis=1) & (cand[:, 0] >= 0) & (cand[:, 1] >= 0)
                  & (cand[:, 0] < self.shape[0]) & (cand[:, 1] < self.shape[1]))
            tile_ids.append(cand[ok, 0] * self.shape[1] + cand[ok, 1])
            point_ids.append(np.nonzero(ok)[0])
        tid, pid = np.concatenate(tile_ids), np.concatenate(point_ids)
        order = np.lexsort((pid, tid))
        tid, pid = tid[order], pid[order]
        cuts = np.nonzero(np.diff(tid))[0] + 1
        return {(int(t[0] // self.shape[1]), int(t[0] % self.shape[1])): p
                for t, p in zip(np.split(tid, cuts), np.split(pid, cuts)) if len(p)}

    def tiles_touching(self, center: np.ndarray, radius: float) -> list[tuple[int, int]]:
        """Tiles whose extended square meets the disk (center, radius), nearest first."""
        c = np.asarray(center, dtype=np.float64)
        reach = (self.overlap + radius) / self.size
        lo = np.floor((c - np.array(self.origin)) / self.size - reach).astype(int)
        hi = np.floor((c - np.array(self.origin)) / self.size + reach).astype(int)
        out = []
        for i in range(max(lo[0], 0), min(hi[0], self.shape[0] - 1) + 1):
            for j in range(max(lo[1], 0), min(hi[1], self.shape[1] - 1) + 1):
                b = self.bounds(i, j)
                nearest = np.clip(c, [b[0], b[1]], [b[2], b[3]])
                d = float(np.linalg.norm(c - nearest))
                if d <= radius:
                    mid = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
                    out.append((float(np.linalg.norm(c - mid)), (i, j)))
        return [t for _, t in sorted(out)]


def tile_name(i: int, j: int) -> str:
    return f"tiles/tile_{i}_{j}.h5"


def make_grid(g: np.ndarray, size: float, overlap: float, axes: tuple[int, int]) -> TileGrid:
    origin = g.min(axis=0)
    extent = g.max(axis=0) - origin
    shape = tuple(int(max(1, math.floor(e / size) + 1)) for e in extent)
    return TileGrid((float(origin[0]), float(origin[1])), float(size), float(overlap), axes, shape)


MIN_COMPRESSED = 640      # descriptors; below, a tile keeps them uncompressed (exact search)


def tile_index(descriptors: np.ndarray, pq_bytes: int, seed: int = 0):
    """A tile's own FAISS index: IVF with 4-bit fast-scan PQ (2 x pq_bytes sub-vectors),
    IVF-Flat when pq_bytes is 0, exact (flat) for tiny tiles. Measured on the demo room
    (20k SIFT): PQ64x4fs trains in 0.5 s and finds the exact nearest neighbour for 97 %
    of descriptors; 8-bit PQ32 (same bytes) took 3.6-28 s to train, searched 6x slower
    and found 98 %."""
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    m, d = x.shape
    if pq_bytes and d % (2 * pq_bytes):
        raise VlocError(f"2 x pq_bytes must divide the descriptor size {d}, got pq_bytes={pq_bytes}")
    if m < MIN_COMPRESSED:
        index = faiss.IndexFlatL2(d)
    else:
        nlist = int(min(4 * math.sqrt(m), m // 39, 4096))          # >= 39 training points per list
        index = faiss.index_factory(d, f"IVF{nlist},PQ{2 * pq_bytes}x4fs" if pq_bytes else f"IVF{nlist},Flat")
        faiss.extract_index_ivf(index).cp.seed = seed
        rng = np.random.default_rng(seed)
        index.train(x[np.sort(rng.choice(m, size=min(m, 256 * nlist), replace=False))])
    index.add(x)
    return index


def write_tile(path: Path, xyz: np.ndarray, desc_point: np.ndarray, index, bounds, n_frames: int) -> int:
    blob = faiss.serialize_index(index)          # FAISS's own format (no pickle)
    with h5py.File(path, "w") as f:
        f.create_dataset("xyz", data=xyz.astype(np.float64))
        f.create_dataset("desc_point", data=desc_point.astype(np.int32))
        f.create_dataset("index", data=blob)
        f.attrs["bounds"] = np.asarray(bounds, dtype=np.float64)
        f.attrs["frames"] = n_frames
    return path.stat().st_size


def _build_tile(job: tuple) -> tuple[str, dict, float, int] | None:
    """One tile, in a worker process: its structure map (in a scratch folder), then its
    points and compressed index written to its tile file. Returns (key, tiles.json
    entry, mean reprojection error, descriptor size); None if too few matches."""
    from ..features.store import read_features
    from .build import build_map
    (i, j), sub, base, pq_bytes, bounds, store, tmp, work = job
    feats = read_features(store, [f.name for f in sub])
    scratch = Path(work) / f"tile_{i}_{j}"
    try:
        inner = build_map(sub, scratch, base, progress=False, features=feats, overwrite=True,
                          save_index=False)           # the tile gets its own PQ index below
    except MapError:
        return None                       # too few matches among this tile's images
    pts = read_points(scratch / "points.h5")
    with faiss_threads(1):        # a tile is one core's work: more OpenMP threads only contend
        index = tile_index(pts.descriptors, pq_bytes)   # (1k city, 2 busy cores: 196 s -> 16 s)
    name = tile_name(i, j)
    nbytes = write_tile(Path(tmp) / name, pts.xyz, pts.desc_point, index, bounds, len(sub))
    shutil.rmtree(scratch, ignore_errors=True)
    info = {"file": name, "frames": len(sub), "points": len(pts), "descriptors": len(pts.descriptors),
            "bytes": nbytes, "bounds": list(bounds)}
    return f"{i}_{j}", info, inner["stats"]["mean_reprojection_error"], pts.descriptors.shape[1]


def _map_jobs(fn, jobs: list, workers: int, desc: str, progress: bool):
    """`fn` over `jobs` in `workers` spawned processes (spawn, not fork: the parent may
    hold OpenMP and OpenCV thread pools), results in completion order."""
    if workers <= 1 or len(jobs) < 2:
        yield from progress_bar(map(fn, jobs), desc, progress, total=len(jobs))
        return
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)))
    try:
        yield from progress_bar(pool.imap_unordered(fn, jobs), desc, progress, total=len(jobs))
    except BaseException:
        pool.terminate()
        raise
    pool.close()                      # workers exit on their own (terminate makes glog print stacks)
    pool.join()


def build_tiled_map(frames, out: Path, config: TiledMapConfig = TiledMapConfig(), source: dict | None = None,
                    overwrite: bool = False, progress: bool = True, workers: int | None = None) -> dict:
    """A tiled map: the grid is laid over the mapping cameras' centres; each tile is a
    structure map of the frames whose centres lie in its extended square (so it holds
    what can be seen from there), kept as points + a compressed descriptor index.
    Tiles are built independently, in `workers` processes (default: up to 2), so
    memory is bounded by a tile per worker, not by the map."""
    frames = list(frames)
    if len(frames) < 2:
        raise MapError(f"need at least 2 mapping images, got {len(frames)}")
    if not all(f.has_pose for f in frames):
        raise MapError("a tiled map needs a pose for every mapping frame (the tiles follow the cameras)")
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    t0 = time.perf_counter()
    axes = (_AXES[config.ground_axes[0]], _AXES[config.ground_axes[1]])
    g = np.array([f.cam_from_world.center[list(axes)] for f in frames])
    grid = make_grid(g, config.tile_size, config.tile_overlap, axes)
    members = sorted((k, v) for k, v in grid.tiles_of_points(g).items() if len(v) >= 2)
    base = MapConfig.from_dict({k: v for k, v in config.to_dict().items() if k in MapConfig.__dataclass_fields__})
    tiles, totals = {}, {"points": 0, "descriptors": 0}
    reproj = []
    with atomic_map_dir(out, overwrite) as tmp, tempfile.TemporaryDirectory(dir=tmp.parent) as work:
        work = Path(work)
        extractor_cfg = extract_to_store(frames, base, work / "features.h5", progress)
        t_feat = time.perf_counter() - t0
        (tmp / "tiles").mkdir()
        jobs = [((i, j), [frames[k] for k in idx], base, config.pq_bytes, grid.bounds(i, j),
                 str(work / "features.h5"), str(tmp), str(work)) for (i, j), idx in members]
        for done in _map_jobs(_build_tile, jobs, workers, "tiles", progress):
            if done is None:
                continue
            key, info, err, dim = done
            tiles[key] = info
            totals["points"] += info["points"]
            totals["descriptors"] += info["descriptors"]
            reproj.append(err)
        if not tiles:
            raise MapError("no tile could be built: too few verified matches between mapping images")
        tiles = dict(sorted(tiles.items(), key=lambda kv: tuple(int(v) for v in kv[0].split("_"))))
        (tmp / TILES_JSON).write_text(json.dumps({"grid": grid.to_dict(), "tiles": tiles}, indent=1))
        sizes = [t["bytes"] for t in tiles.values()]
        stats = {"images": len(frames), **totals, "tiles": len(tiles), "grid_shape": list(grid.shape),
                 "mean_track_length": totals["descriptors"] / max(totals["points"], 1),
                 "mean_reprojection_error": float(np.mean(reproj)),
                 "max_tile_mb": max(sizes) / 2**20, "median_tile_mb": float(np.median(sizes)) / 2**20,
                 "descriptor_bytes": config.pq_bytes or 4 * dim,
                 "timings": {"features": t_feat, "total": time.perf_counter() - t0}, "workers": workers}
        return write_manifest(tmp, "tiled", {"map": config.to_dict(), "extractor": extractor_cfg},
                              source or {}, stats)


@dataclass
class Tile:
    key: str
    xyz: np.ndarray
    desc_point: np.ndarray
    index: object
    nbytes: int                       # memory held: index codes and lists, points


def read_tile(map_dir: Path, key: str, info: dict, expected_bytes: int | None) -> Tile:
    """Load one tile file, with a clear MapError when it is missing, truncated or corrupt."""
    path = Path(map_dir) / info["file"]
    if not path.is_file():
        raise MapError(f"tile {key} of map {map_dir} is missing: {info['file']}")
    if expected_bytes is not None and path.stat().st_size != expected_bytes:
        raise MapError(f"tile file {path} is truncated or modified ({path.stat().st_size} bytes, "
                       f"expected {expected_bytes}): rebuild the map")
    try:
        with h5py.File(path, "r") as f:
            xyz, desc_point, blob = f["xyz"][()], f["desc_point"][()], f["index"][()]
        index = faiss.deserialize_index(blob)
    except (OSError, KeyError, RuntimeError, ValueError) as e:
        raise MapError(f"corrupt tile file {path}: {str(e).splitlines()[0]}") from None
    if index.ntotal != len(desc_point) or (len(desc_point) and desc_point.max() >= len(xyz)):
        raise MapError(f"corrupt tile file {path}: inconsistent points and descriptors")
    return Tile(key, xyz, desc_point, index, int(blob.nbytes + xyz.nbytes + desc_point.nbytes))


def read_tiles_json(map_dir: Path) -> tuple[TileGrid, dict]:
    path = Path(map_dir) / TILES_JSON
    try:
        d = json.loads(path.read_text())
        return TileGrid.from_dict(d["grid"]), d["tiles"]
    except FileNotFoundError:
        raise MapError(f"tiled map {map_dir} has no {TILES_JSON}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise MapError(f"corrupt {path}: {e}") from None

