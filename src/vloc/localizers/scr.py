"""CNN scene coordinate regression (`scr`; after ACE, Brachmann et al. 2023) and its DSAC
fine-tuned variant (`scr-dsac`; Brachmann et al. 2017): the map is the regression head
(`head.pt`, fp16 weights) on a frozen packaged encoder named in the manifest. A query
with depth is localized by 3-point Kabsch RANSAC between its camera points and the
predicted scene coordinates of its cells; a colour-only query by PnP (PoseLib
LO-RANSAC)."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..datasets import Frame
from ..errors import DataError, MapError, VlocError
from ..maps.mapdir import atomic_map_dir, write_manifest
from ..scr.config import ScrConfig
from ..scr.forest import RGBDFrame, camera_points, resize_depth, working_camera
from ..scr.kabsch import pnp_from_candidates, ransac_kabsch
from .base import Estimate, Prior, Query
from .query_io import read_method_manifest

__all__ = ["ScrConfig", "ScrLocalizer", "build_scr_dsac_map", "build_scr_map"]

METHODS = ("scr", "scr-dsac")


def build_scr_map(frames: list[Frame], out: Path, config: ScrConfig = ScrConfig(), source: dict | None = None,
                  overwrite: bool = False, progress: bool = True, dsac: bool = False) -> dict:
    """Train the head on the posed mapping frames (targets from depth where a frame has
    it, else the reprojection loss); with `dsac`, fine-tune it with DSAC afterwards."""
    from ..scr import cnn
    out = Path(out)
    if out.exists() and not overwrite:                # before training, not after
        raise MapError(f"output exists: {out} (use --overwrite to replace it)")
    if dsac and not config.dsac.steps:
        raise VlocError("scr-dsac needs dsac steps >= 1 (without fine-tuning, build an scr map)")
    frames = list(frames)
    t0 = time.perf_counter()
    buf = cnn.build_buffer(frames, config, progress)
    timings = {"buffer": time.perf_counter() - t0}
    head, history = cnn.train_head(buf, config, progress=progress)
    timings["candidates"] = history.pop("candidate_seconds")
    timings["coordinates"] = history.pop("steps_seconds")
    cpu = {"coordinates": history.pop("cpu_seconds")}
    for key in ("seconds", "candidate_cpu_seconds", "steps_cpu_seconds"):
        history.pop(key)
    if dsac:
        from ..scr.dsac import fine_tune
        tuned = fine_tune(head, buf, config, progress=progress)
        timings["dsac"] = tuned.pop("seconds")
        cpu["dsac"] = tuned.pop("cpu_seconds")
        history.update(tuned)
    stats = {"images": len(frames), "frames_with_depth": int(buf.has_depth.sum()), "buffer_cells": len(buf),
             "buffer_images": buf.images, "parameters": sum(p.numel() for p in head.parameters()),
             "final_coordinate_loss": history["coordinate_loss"][-1]["loss"] if history["coordinate_loss"] else None,
             "history": history, "timings": timings, "training_cpu_seconds": cpu}
    with atomic_map_dir(out, overwrite) as tmp:
        cnn.save_head(head, tmp / "head.pt")
        timings["total"] = time.perf_counter() - t0
        manifest = write_manifest(tmp, "scr-dsac" if dsac else "scr", map_config(head, config), source or {}, stats)
    return manifest


def map_config(head, config: ScrConfig) -> dict:
    """The manifest's config: the map options and the network (encoder, head)."""
    from ..scr.cnn import CELL
    return {"map": config.to_dict(), "network": {"encoder": config.encoder, "cell": CELL, **head.architecture()}}


def build_scr_dsac_map(frames: list[Frame], out: Path, config: ScrConfig = ScrConfig(), source: dict | None = None,
                       overwrite: bool = False, progress: bool = True) -> dict:
    return build_scr_map(frames, out, config, source, overwrite, progress, dsac=True)


class ScrLocalizer:
    """Answers queries from the loaded head; never changes it."""

    def __init__(self, manifest: dict, head, config: ScrConfig):
        self.manifest, self.head, self.config = manifest, head, config
        self.encoder = manifest["config"]["network"]["encoder"]

    @classmethod
    def from_head(cls, head, config: ScrConfig, method: str = "scr") -> ScrLocalizer:
        """A localizer for a head in memory (benchmarks, studies)."""
        return cls({"method": method, "config": map_config(head, config)}, head.eval(), config)

    @classmethod
    def load(cls, map_dir, config: ScrConfig | None = None, method: str | None = None) -> ScrLocalizer:
        """`config`: query-time options (RANSAC, PnP) to use instead of the map's; its
        training options are ignored. `method`: the map must be of it (default: either)."""
        from ..maps.mapdir import read_manifest
        from ..scr.cnn import load_head
        map_dir = Path(map_dir)
        manifest = read_method_manifest(map_dir, method) if method else read_manifest(map_dir)
        if manifest.get("method") not in METHODS:
            raise MapError(f"map {map_dir} was built for method {manifest.get('method')!r}, not scr or scr-dsac")
        try:
            stored = ScrConfig.from_dict(manifest["config"]["map"])
            network = manifest["config"]["network"]
        except (KeyError, TypeError) as e:
            raise MapError(f"map {map_dir} has no valid scr config: {e}") from None
        if config is not None:
            stored = replace(stored, ransac=config.ransac, pnp=config.pnp)
        return cls(manifest, load_head(map_dir / "head.pt", network), stored)

    def read(self, query: Query) -> RGBDFrame:
        return read_rgbd_query(query, self.config.max_size, self.config.max_depth, "scene coordinate regression")

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        from ..scr.cnn import predict
        timings: dict[str, float] = {}
        t = time.perf_counter()
        frame = self.read(query)
        timings["read"] = time.perf_counter() - t
        t = time.perf_counter()
        coords, x, y = predict(self.head, self.encoder, frame.colour)
        timings["network"] = time.perf_counter() - t
        t = time.perf_counter()
        if frame.depth is not None:
            valid = frame.depth[y, x] > 0
            if valid.sum() < 3:
                return Estimate.failed(f"the query has {int(valid.sum())} cells with valid depth, need >= 3",
                                       timings=timings, camera=query.camera)
            x, y, coords = x[valid], y[valid], coords[valid]
            res = ransac_kabsch(camera_points(frame.depth, frame.camera, x, y), coords, self.config.ransac)
            timings["ransac"] = time.perf_counter() - t
            return Estimate(res.cam_from_world, res.num_inliers, len(x), res.reason, timings, query.camera,
                            {"mode": "rgbd", "hypotheses": res.hypotheses})
        res, n = pnp_from_candidates(np.c_[x + 0.5, y + 0.5], coords, frame.camera, self.config.pnp)
        timings["pose"] = time.perf_counter() - t
        return Estimate(res.cam_from_world, res.num_inliers, n, res.reason, timings, query.camera, {"mode": "rgb"})


def load_scr(map_dir, config: ScrConfig | None = None) -> ScrLocalizer:
    return ScrLocalizer.load(map_dir, config, "scr")


def load_scr_dsac(map_dir, config: ScrConfig | None = None) -> ScrLocalizer:
    return ScrLocalizer.load(map_dir, config, "scr-dsac")


def read_rgbd_query(query: Query, max_size: int, max_depth: float, what: str) -> RGBDFrame:
    """A query's colour image at most `max_size` on its longer side, its depth (if
    given) resized to it and the camera at that size; `what` names the method in errors."""
    from ..imageio import read_rgb
    if query.camera is None:
        raise DataError(f"query {query.name}: {what} needs the query's camera intrinsics")
    colour = read_rgb(query.image_path, max_size, f"query {query.name}", query.camera, image=query.image)
    if colour.ndim != 3 or colour.shape[2] != 3:
        raise DataError(f"query {query.name}: {what} needs a colour image, got shape {colour.shape}")
    depth = None
    if query.depth is not None:
        h, w = np.shape(query.depth)[:2] if np.ndim(query.depth) == 2 else colour.shape[:2]
        if not np.isclose(w / max(h, 1), colour.shape[1] / colour.shape[0], rtol=0.01):
            raise DataError(f"query {query.name}: depth is {w}x{h}, not of the image's aspect "
                            f"({query.camera.width}x{query.camera.height})")
        depth = resize_depth(query.depth, colour.shape[:2], max_depth)
    return RGBDFrame(colour, depth, working_camera(query.camera, colour.shape))
