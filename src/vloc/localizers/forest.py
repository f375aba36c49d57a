"""Scene coordinate regression forests (Shotton et al. 2013): the map is a forest trained
on the posed RGB-D mapping frames (`forest_rgbd.npz`) and, unless turned off, a
colour-only one (`forest_rgb.npz`). A query with depth is localized by 3-point Kabsch
RANSAC between its camera points and the predicted scene coordinates, candidates that
several trees agree on drawn more often; a colour-only query by PnP (PoseLib) on the
colour-only forest's candidates that other trees agree with."""
from __future__ import annotations

import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..datasets import Frame
from ..errors import DataError, MapError
from ..maps.mapdir import atomic_map_dir, write_manifest
from ..scr.config import ForestConfig
from ..scr.forest import (KINDS, Forest, RGBDFrame, RGBDImages, TrainingSet, camera_points,
                          sample_pixels, train_forest)
from ..scr.kabsch import pnp_from_candidates, ransac_kabsch
from .base import Estimate, Prior, Query
from .query_io import read_method_manifest

__all__ = ["ForestConfig", "ForestLocalizer", "build_forest_map"]


def build_forest_map(frames: list[Frame], out: Path, config: ForestConfig = ForestConfig(),
                     source: dict | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Train the forest(s) on the posed mapping frames that have (registered) depth;
    frames without depth are left out with a warning and listed in the manifest
    (`without_depth`); none with depth is an error."""
    out = Path(out)
    if out.exists() and not overwrite:                # before training, not after
        raise MapError(f"output exists: {out} (use --overwrite to replace it)")
    frames = [f for f in frames if f.has_pose]
    missing = [f.name for f in frames if not f.has_depth]
    if len(missing) == len(frames):
        raise DataError(f"the forest needs depth in its mapping frames: none of {len(frames)} has any")
    if missing:
        warnings.warn(f"the forest trains on the {len(frames) - len(missing)} mapping frames with depth; "
                      f"{len(missing)} without depth are left out (e.g. {missing[0]})", stacklevel=2)
        frames = [f for f in frames if f.has_depth]
    t0, cpu0 = time.perf_counter(), time.process_time()
    data = TrainingSet.read(frames, config.max_size, config.max_depth, progress)
    timings = {"read": time.perf_counter() - t0}
    forests = {}
    for kind in KINDS[:1 + config.rgb_forest]:
        t = time.perf_counter()
        forests[kind] = train_forest(data, kind, config, progress)
        timings[f"train_{kind}"] = time.perf_counter() - t
    h, w = data.images.colour.shape[1:3]
    stats = {"images": len(frames), "without_depth": missing, "working_size": [int(w), int(h)],
             "samples_per_tree": int((data.images.depth > 0).reshape(len(frames), -1).sum(1)
                                     .clip(max=config.samples_per_frame).sum()),
             "forests": {k: f.stats() for k, f in forests.items()}, "timings": timings}
    with atomic_map_dir(out, overwrite) as tmp:
        for kind, forest in forests.items():
            forest.save(tmp / f"forest_{kind}.npz")
        timings["total"] = time.perf_counter() - t0
        timings["cpu_total"] = time.process_time() - cpu0     # this process's CPU seconds (a shared machine)
        manifest = write_manifest(tmp, "forest", {"map": config.to_dict()}, source or {}, stats)
    return manifest


class ForestLocalizer:
    """Answers queries from the loaded forests; never changes them (online adaptation
    is an explicit step: `vloc.scr.LeafAdapter(localizer.forests["rgbd"])`)."""

    def __init__(self, manifest: dict, forests: dict[str, Forest], config: ForestConfig):
        self.manifest, self.forests, self.config = manifest, forests, config

    @classmethod
    def load(cls, map_dir, config: ForestConfig | None = None) -> ForestLocalizer:
        """`config`: query-time options (pixels, consensus, RANSAC, PnP) to use instead
        of the map's; its training options are ignored."""
        map_dir = Path(map_dir)
        manifest = read_method_manifest(map_dir, "forest")
        try:
            stored = ForestConfig.from_dict(manifest["config"]["map"])
        except (KeyError, TypeError) as e:
            raise MapError(f"map {map_dir} has no valid forest config: {e}") from None
        if config is not None:
            stored = replace(stored, query_pixels=config.query_pixels, ransac=config.ransac, pnp=config.pnp,
                             consensus_radius=config.consensus_radius, consensus_boost=config.consensus_boost,
                             rgb_consensus=config.rgb_consensus, rgb_query_pixels=config.rgb_query_pixels)
        forests = {kind: Forest.load(map_dir / f"forest_{kind}.npz") for kind in KINDS
                   if (map_dir / f"forest_{kind}.npz").is_file()}
        if "rgbd" not in forests:
            raise MapError(f"map {map_dir} is incomplete: forest_rgbd.npz is missing")
        return cls(manifest, forests, stored)

    def read(self, query: Query) -> RGBDFrame:
        """The query at the forest's working size (depth None for colour-only queries)."""
        from .scr import read_rgbd_query
        return read_rgbd_query(query, self.config.max_size, self.config.max_depth, "the forest")

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        frame = self.read(query)
        timings["read"] = time.perf_counter() - t
        if frame.depth is not None:
            return self._rgbd(query, frame, timings)
        return self._rgb(query, frame, timings)

    def _rgbd(self, query: Query, frame: RGBDFrame, timings: dict) -> Estimate:
        """3-point Kabsch RANSAC on the pixels with depth; a candidate is drawn by its
        leaf weight times consensus_boost^(other trees agreeing)."""
        cfg, forest = self.config, self.forests["rgbd"]
        images = RGBDImages.one(frame)
        rng = np.random.default_rng(cfg.seed)
        f, x, y = sample_pixels(images.depth > 0, cfg.query_pixels, rng)
        if len(x) < 3:
            return Estimate.failed(f"the query has {len(x)} pixels with valid depth, need >= 3",
                                   timings=timings, camera=query.camera)
        t = time.perf_counter()
        coords, weights = forest.predict(images, forest.pixels(images, f, x, y))
        if cfg.consensus_boost != 1:
            weights = weights * cfg.consensus_boost ** forest.agreement(coords, cfg.consensus_radius)
        timings["forest"] = time.perf_counter() - t
        t = time.perf_counter()
        res = ransac_kabsch(camera_points(frame.depth, frame.camera, x, y), coords, self.config.ransac, weights)
        timings["ransac"] = time.perf_counter() - t
        return Estimate(res.cam_from_world, res.num_inliers, len(x), res.reason, timings, query.camera,
                        {"mode": "rgbd", "hypotheses": res.hypotheses})

    def _rgb(self, query: Query, frame: RGBDFrame, timings: dict) -> Estimate:
        """PnP (PoseLib LO-RANSAC) on every mode that at least `rgb_consensus` other
        trees agree with (0, or too few trees: each pixel's strongest mode per tree)."""
        if "rgb" not in self.forests:
            return Estimate.failed("the query has no depth and this map has no colour-only forest "
                                   "(built with rgb_forest = false)", timings=timings, camera=query.camera)
        forest = self.forests["rgb"]
        images = RGBDImages.one(frame)
        rng = np.random.default_rng(self.config.seed)
        f, x, y = sample_pixels(np.ones((1,) + frame.colour.shape[:2], bool), self.config.rgb_query_pixels, rng)
        t = time.perf_counter()
        if 0 < self.config.rgb_consensus < len(forest.trees):
            coords, _ = forest.predict(images, forest.pixels(images, f, x, y))
            agree = forest.agreement(coords, self.config.consensus_radius) >= self.config.rgb_consensus
            coords = np.where(agree[..., None], coords, np.nan)
        else:
            coords, _ = forest.predict(images, forest.pixels(images, f, x, y), modes=1)
        timings["forest"] = time.perf_counter() - t
        t = time.perf_counter()
        res, n = pnp_from_candidates(np.c_[x + 0.5, y + 0.5], coords, frame.camera, self.config.pnp)
        timings["pose"] = time.perf_counter() - t
        return Estimate(res.cam_from_world, res.num_inliers, n, res.reason, timings, query.camera, {"mode": "rgb"})
