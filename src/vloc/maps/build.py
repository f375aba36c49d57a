"""Building a structure map from a scene's mapping frames:
features -> pairs -> matches (verified) -> 3D points (triangulated with known poses,
lifted from depth, or by SfM) -> map directory."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from ..progress import progress_bar

from .._libs import pycolmap
from ..datasets import Frame
from ..errors import DataError, MapError
from ..features import Features, make_extractor
from ..features.store import write_features
from ..matching import match_mutual_ratio_many
from ..matching.geometry import verify_fundamental, verify_with_poses
from ..matching.index import FLAT_MAX, build_faiss_index, save_index as _save_faiss_index
from .colmap_db import known_pose_reconstruction, write_database
from .config import MapConfig
from .mapdir import atomic_map_dir, write_manifest
from .pairs import select_pairs
from .points import points_from_reconstruction, write_points


def match_pairs(frames: list[Frame], feats: dict[str, Features], pairs, cfg: MapConfig,
                use_poses: bool, progress: bool = True, lightglue=None) -> dict[tuple[int, int], np.ndarray]:
    """Mutual NN + ratio matches of each pair (an image with all its partners at once,
    `match_mutual_ratio_many`), or LightGlue's when a matcher is given; geometrically
    verified."""
    partners: dict[int, list[int]] = {}
    for i, j in pairs:
        partners.setdefault(i, []).append(j)
    out = {}
    bar = progress_bar(None, "matching", progress, total=len(pairs))
    for i, js in partners.items():
        fi, a = frames[i], feats[frames[i].name]
        if lightglue is None:
            matches = match_mutual_ratio_many(a.descriptors, [feats[frames[j].name].descriptors for j in js],
                                              cfg.pair_ratio)
        else:
            matches = [lightglue.match(a, feats[frames[j].name]) for j in js]
        # threshold given at extraction resolution -> original pixels
        scale = max(fi.camera.width, fi.camera.height) / min(cfg.resize_max, max(fi.camera.width, fi.camera.height))
        thr = cfg.epipolar_threshold * scale
        for j, m in zip(js, matches):
            fj, b = frames[j], feats[frames[j].name]
            if use_poses:
                m = verify_with_poses(a.keypoints, b.keypoints, m, fi.camera, fj.camera,
                                      fi.cam_from_world, fj.cam_from_world, thr)
            else:
                m = verify_fundamental(a.keypoints, b.keypoints, m, thr)
            if len(m):
                out[(i, j)] = m
        bar.update(len(js))
    bar.close()
    return out


def _points_mode(frames: list[Frame], cfg: MapConfig) -> str:
    if cfg.points != "auto":
        return cfg.points
    if not all(f.has_pose for f in frames):
        return "sfm"
    if all(f.has_depth and f.depth_registered for f in frames):
        return "depth"
    return "triangulate"


def triangulate(frames, feats, matches, cfg: MapConfig, work: Path):
    rec = known_pose_reconstruction(frames)
    db = work / "database.db"
    write_database(db, rec, frames, feats, matches)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.extract_colors = False
    opts.num_threads = 2
    opts.triangulation.ignore_two_view_tracks = not cfg.two_view_tracks
    opts.random_seed = 0                      # reproducible maps
    opts.triangulation.random_seed = 0
    (work / "tri").mkdir()
    return pycolmap.triangulate_points(rec, str(db), str(work), str(work / "tri"), options=opts)


def build_map(frames: list[Frame], out: Path, config: MapConfig = MapConfig(), source: dict | None = None,
              overwrite: bool = False, progress: bool = True, features: dict[str, Features] | None = None,
              save_index: bool = True) -> dict:
    """Build a structure map from `frames` into directory `out`. Returns the manifest.
    `features`: already extracted with this config's extractor (e.g. shared by tiles);
    `save_index=False`: no trained IVF index is stored (a caller that indexes the
    points its own way)."""
    frames = list(frames)
    if len(frames) < 2:
        raise DataError(f"need at least 2 mapping images, got {len(frames)}")
    mode = _points_mode(frames, config)
    if mode in ("triangulate", "depth") and not all(f.has_pose for f in frames):
        raise DataError(f"points={mode} needs a pose for every mapping frame")
    extractor = make_extractor(config.features, resize_max=config.resize_max,
                               max_keypoints=config.max_keypoints, **config.feature_options)
    lightglue = map_lightglue(extractor.config_dict(), config)    # a wrong matcher fails here
    if mode == "triangulate" and features is None and len(frames) > config.block_images:
        return _build_blocked(frames, out, config, source, overwrite, progress, save_index, lightglue)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if features is None:
        feats = _timed(timings, "features", lambda: _extract(extractor, frames, config, progress))
    else:
        feats = features
    pairs = _timed(timings, "pairs", lambda: select_pairs(frames, config.pairs, config.num_pairs, config.max_pair_angle,
                                                          {n: f.descriptors for n, f in feats.items()}))
    matches = _timed(timings, "matching",
                     lambda: match_pairs(frames, feats, pairs, config, mode != "sfm", progress, lightglue))
    with atomic_map_dir(out, overwrite) as tmp, tempfile.TemporaryDirectory() as work:
        work = Path(work)
        t = time.perf_counter()
        if mode == "triangulate":
            rec = triangulate(frames, feats, matches, config, work)
        elif mode == "depth":
            from .depth import lift_depth
            rec = lift_depth(frames, feats, matches, config)
        else:
            from .sfm import run_sfm
            rec = run_sfm(frames, feats, matches, work)
        timings["points"] = time.perf_counter() - t
        if rec.num_points3D() == 0:
            raise MapError("no 3D point could be made: too few verified matches between mapping images")
        t = time.perf_counter()
        pts = points_from_reconstruction(rec, feats, config.point_descriptors)
        (tmp / "model").mkdir()
        rec.write(str(tmp / "model"))
        write_features(tmp / "features.h5", {n: feats[n] for n in (im.name for im in rec.images.values())})
        write_points(tmp / "points.h5", pts)
        if save_index and len(pts.descriptors) > FLAT_MAX:       # trained once here, not at every load
            _save_faiss_index(build_faiss_index(pts.descriptors, "ivf"), tmp / "index.faiss")
        _write_pairs(tmp, frames, matches)
        timings["write"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        stats = {"images": rec.num_reg_images(), "points": len(pts), "descriptors": len(pts.descriptors),
                 "mean_track_length": float(np.mean(pts.track_length)), "pairs": len(pairs),
                 "verified_pairs": len(matches), "points_mode": mode, "timings": timings,
                 "mean_reprojection_error": float(rec.compute_mean_reprojection_error())}
        manifest = write_manifest(tmp, "structure", {"map": config.to_dict(), "extractor": extractor.config_dict()},
                                  source or {}, stats)
    return manifest


def map_lightglue(extractor_config: dict, config: MapConfig):
    """The LightGlue matcher of map option matcher=lightglue, else None."""
    if config.matcher != "lightglue":
        return None
    from ..matching.lightglue import lightglue_for_extractor
    return lightglue_for_extractor(extractor_config)


def _extract(extractor, frames, cfg, progress):
    from .extract import extract_frames
    return extract_frames(extractor, frames, cfg.resize_max, progress)


def _timed(timings: dict, key: str, fn):
    t = time.perf_counter()
    out = fn()
    timings[key] = time.perf_counter() - t
    return out


class PairWriter:
    """Verified matches as plain files: pairs.txt and matches.h5 (a dataset per pair),
    added block by block."""

    def __init__(self, map_dir: Path, frames):
        self.frames = frames
        self.txt = open(map_dir / "pairs.txt", "w")
        self.h5 = h5py.File(map_dir / "matches.h5", "w")

    def add(self, matches: dict[tuple[int, int], np.ndarray]) -> None:
        for (i, j), m in matches.items():
            self.txt.write(f"{self.frames[i].name} {self.frames[j].name}\n")
            d = self.h5.create_dataset(f"{i}-{j}", data=m.astype(np.uint32))
            d.attrs["image0"], d.attrs["image1"] = self.frames[i].name, self.frames[j].name

    def close(self) -> None:
        self.txt.close()
        self.h5.close()


def _write_pairs(map_dir: Path, frames, matches) -> None:
    writer = PairWriter(map_dir, frames)
    try:
        writer.add(matches)
    finally:
        writer.close()


def _build_blocked(frames, out: Path, config: MapConfig, source, overwrite: bool, progress: bool,
                   save_index: bool, lightglue=None) -> dict:
    """A known-pose map triangulated block by block (maps/blocked.py); features on disk."""
    if config.pairs == "retrieval":
        raise DataError(f"pairs=retrieval is not available for maps of more than block_images "
                        f"({config.block_images}) images; use pairs = \"poses\"")
    from ..features.store import FeatureReader
    from .blocked import map_points, model_from_observations, triangulate_blocks
    from .extract import extract_to_store
    t0 = time.perf_counter()
    with atomic_map_dir(out, overwrite) as tmp, tempfile.TemporaryDirectory(dir=tmp.parent) as work:
        extractor_cfg = extract_to_store(frames, config, tmp / "features.h5", progress)
        t_feat = time.perf_counter() - t0
        pairs = select_pairs(frames, config.pairs, config.num_pairs, config.max_pair_angle)
        writer = PairWriter(tmp, frames)
        try:
            obs, info = triangulate_blocks(frames, pairs, tmp / "features.h5", config, Path(work),
                                           writer.add, progress, lightglue)
        finally:
            writer.close()
        t = time.perf_counter()
        reader = FeatureReader(tmp / "features.h5")
        try:
            pts = map_points(obs, frames, reader, config.point_descriptors)
            rec = model_from_observations(frames, obs, reader)
        finally:
            reader.close()
        (tmp / "model").mkdir()
        rec.write(str(tmp / "model"))
        reprojection = float(rec.compute_mean_reprojection_error())
        del rec, obs
        write_points(tmp / "points.h5", pts)
        if save_index and len(pts.descriptors) > FLAT_MAX:
            _save_faiss_index(build_faiss_index(pts.descriptors, "ivf"), tmp / "index.faiss")
        timings = {"features": t_feat, **info.pop("timings"), "write": time.perf_counter() - t,
                   "total": time.perf_counter() - t0}
        stats = {"images": len(frames), "points": len(pts), "descriptors": len(pts.descriptors),
                 "mean_track_length": float(np.mean(pts.track_length)), "pairs": len(pairs),
                 "points_mode": "triangulate", **info, "timings": timings,
                 "mean_reprojection_error": reprojection}
        return write_manifest(tmp, "structure", {"map": config.to_dict(), "extractor": extractor_cfg},
                              source or {}, stats)
