"""Tiled localization with a position prior (Lynen et al. 2020): the prior selects the
tiles it touches; each is loaded lazily (an LRU cache bounded in bytes), the query is
matched 2D-3D against each tile's compressed descriptors and a pose estimated per
tile; the estimate with most inliers wins."""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..estimation import PoseConfig
from ..geometry.geo import GeoRegistration
from ..maps.tiles import Tile, TileGrid, read_tile, read_tiles_json
from ..matching.index import match_to_points
from .base import Estimate, Prior, Query
from .query_io import estimate_query_pose, extractor_from_manifest, query_features, read_method_manifest


@dataclass(frozen=True)
class TiledConfig:
    ratio: float = 0.9                 # ratio test against the nearest other point (per tile)
    nprobe: int = 16                   # IVF cells visited per query descriptor
    max_tiles: int = 9                 # at most this many tiles per query (nearest the prior first)
    cache_mb: float = 1024.0           # loaded tiles kept in memory (least recently used dropped)
    prior_slack: float = 2.0           # reject a pose whose centre is beyond slack x radius of the prior
    pose: PoseConfig = PoseConfig()

    def to_dict(self) -> dict:
        return asdict(self)


class TileCache:
    """Tiles loaded on demand; the least recently used are dropped above `budget` bytes
    (the tiles of the current query are always kept)."""

    def __init__(self, map_dir: Path, infos: dict, file_bytes: dict, budget: float):
        self.map_dir, self.infos, self.file_bytes, self.budget = Path(map_dir), infos, file_bytes, budget
        self.tiles: OrderedDict[str, Tile] = OrderedDict()
        self.loads = 0

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tiles.values())

    def get(self, keys: list[str]) -> list[Tile]:
        out = []
        for key in keys:
            if key in self.tiles:
                self.tiles.move_to_end(key)
            else:
                info = self.infos[key]
                self.tiles[key] = read_tile(self.map_dir, key, info, self.file_bytes.get(info["file"]))
                self.loads += 1
            out.append(self.tiles[key])
        while self.nbytes > self.budget and len(self.tiles) > len(keys):
            oldest = next(iter(self.tiles))
            if oldest in keys:
                break
            self.tiles.pop(oldest)
        return out


class TiledLocalizer:
    def __init__(self, map_dir: Path, manifest: dict, grid: TileGrid, infos: dict, config: TiledConfig):
        self.map_dir, self.manifest, self.grid, self.config = Path(map_dir), manifest, grid, config
        files = {rel: f["bytes"] for rel, f in manifest["files"].items()}
        self.cache = TileCache(map_dir, infos, files, config.cache_mb * 2**20)
        self.extractor, self.resize_max = extractor_from_manifest(manifest)
        geo = manifest["config"]["map"].get("geo_registration") or {}
        self.geo = GeoRegistration.from_dict(geo) if geo else None

    @classmethod
    def load(cls, map_dir, config: TiledConfig = TiledConfig()) -> TiledLocalizer:
        # tiles are checked (size) when loaded, not all at start: a map may hold thousands
        manifest = read_method_manifest(map_dir, "tiled", verify="none")
        grid, infos = read_tiles_json(Path(map_dir))
        return cls(Path(map_dir), manifest, grid, infos, config)

    def select_tiles(self, prior: Prior) -> list[str]:
        keys = [f"{i}_{j}" for i, j in self.grid.tiles_touching(prior.ground(self.grid.axes), prior.radius)]
        return [k for k in keys if k in self.cache.infos][: self.config.max_tiles]

    def _extent(self) -> str:
        b = np.array([t["bounds"] for t in self.cache.infos.values()])
        return f"[{b[:, 0].min():.1f}, {b[:, 2].max():.1f}] x [{b[:, 1].min():.1f}, {b[:, 3].max():.1f}]"

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        if prior is None:
            return Estimate.failed("the tiled method needs a position prior (x, y[, z] and radius, or EXIF GPS)")
        keys = self.select_tiles(prior)
        if not keys:
            c = ", ".join(f"{v:.1f}" for v in prior.center)
            return Estimate.failed(f"prior ({c}) radius {prior.radius:g} is outside every tile of the map "
                                   f"(tiles cover {self._extent()} on axes {self._axes_name()})")
        timings: dict[str, float] = {}
        feats, size = query_features(query, self.extractor, self.resize_max, timings)
        t = time.perf_counter()
        tiles = self.cache.get(keys)
        timings["load_tiles"] = time.perf_counter() - t
        timings["matching"] = timings["pose"] = 0.0
        best, reasons = None, []
        for tile in tiles:
            t = time.perf_counter()
            tile.index.nprobe = self.config.nprobe
            qi, pi = match_to_points(tile.index, tile.desc_point, feats.descriptors, self.config.ratio)
            timings["matching"] += time.perf_counter() - t
            if len(qi) == 0:
                reasons.append(f"tile {tile.key}: no 2D-3D match")
                continue
            t = time.perf_counter()
            res = estimate_query_pose(feats.keypoints[qi], tile.xyz[pi], query, size, self.resize_max,
                                      self.config.pose)
            timings["pose"] += time.perf_counter() - t
            reason = res.reason or self._check_prior(res.cam_from_world, prior)
            if reason:
                reasons.append(f"tile {tile.key}: {reason}")
            elif best is None or res.num_inliers > best[0].num_inliers:
                best = (res, len(qi), tile.key)
        details = {"tiles": keys, "query_tile_mb": sum(t.nbytes for t in tiles) / 2**20,
                   "loaded_tile_mb": self.cache.nbytes / 2**20, "tile_loads": self.cache.loads}
        if best is None:
            return Estimate.failed("no tile gave a pose: " + "; ".join(reasons), timings=timings, details=details)
        res, n, key = best
        return Estimate(res.cam_from_world, res.num_inliers, n, None, timings, res.camera,
                        {**details, "best_tile": key})

    def _check_prior(self, cam_from_world, prior: Prior) -> str | None:
        c = cam_from_world.center
        c = c[list(self.grid.axes)] if len(prior.center) == 2 else c
        d = float(np.linalg.norm(c - np.array(prior.center)))
        limit = self.config.prior_slack * prior.radius
        return f"pose {d:.1f} from the prior, beyond {limit:g}" if d > limit else None

    def _axes_name(self) -> str:
        return "".join("xyz"[a] for a in self.grid.axes)
