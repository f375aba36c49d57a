"""Direct pose refinement (PixLoc-style, method `featuremetric`): the pose of the
retrieved mapping image is refined by aligning the query's dense features with the
reference features of the map points seen by the mapping images nearest to it
(vloc.refinement). `refine(query, cam_from_world)` refines any coarse pose (pose
regression, a tracker's prediction).

The map is a hierarchical map (in `hierarchical/`: the structure map, its VLAD
retrieval index and image table) plus the points' reference features
(`references.h5`). The query's camera must be known: the refinement does not
estimate intrinsics."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DataError, VlocError
from ..geometry import Pose
from ..maps.config import MapConfig
from ..maps.mapdir import atomic_map_dir, write_manifest
from ..refinement import PyramidConfig, RefineConfig, feature_pyramid, refine_pose
from ..refinement.references import FILE as REFERENCES, point_references, read_references, write_references
from .base import Estimate, Prior, Query
from .query_io import read_method_manifest


@dataclass(frozen=True)
class FeaturemetricConfig:
    starts: int = 3                  # retrieved images whose poses the refinement starts from
    neighbours: int = 3              # mapping images nearest the starting pose whose points are aligned
    settle_ratio: float = 0.5        # a start whose result this fraction of the points in view agree
                                     # with is kept without trying the later starts (1: try every start)
    refine: RefineConfig = RefineConfig()

    def __post_init__(self):
        if self.neighbours < 1 or self.starts < 1:
            raise VlocError(f"neighbours and starts must be >= 1, got {self.neighbours}, {self.starts}")
        if not 0 < self.settle_ratio <= 1:
            raise VlocError(f"settle_ratio must be in (0, 1], got {self.settle_ratio}")

    def to_dict(self) -> dict:
        return asdict(self)


def build_featuremetric_map(frames, out: Path, config: MapConfig = MapConfig(), source: dict | None = None,
                            overwrite: bool = False, progress: bool = True,
                            pyramid: PyramidConfig = PyramidConfig()) -> dict:
    from .hierarchical import build_hierarchical_map
    frames = list(frames)
    with atomic_map_dir(out, overwrite) as tmp:
        inner = build_hierarchical_map(frames, tmp / "hierarchical", config, source, progress=progress)
        t = time.perf_counter()
        paths = {f.name: f.image_path for f in frames}
        refs, confidence = point_references(tmp / "hierarchical" / "structure" / "model", paths, pyramid, progress)
        write_references(tmp / REFERENCES, refs, confidence, pyramid)
        extra = time.perf_counter() - t
        stats = {**inner["stats"], "timings": {**inner["stats"]["timings"], "references": extra,
                                               "total": inner["stats"]["timings"]["total"] + extra},
                 "median_point_confidence": float(np.median(confidence))}
        known = {f"hierarchical/{rel}": info for rel, info in inner["files"].items()}
        return write_manifest(tmp, "featuremetric", {**inner["config"], "pyramid": pyramid.to_dict()},
                              source or {}, stats, known)


class FeaturemetricLocalizer:
    def __init__(self, manifest, retrieval, poses: dict[str, Pose], refs, confidence, pyramid: PyramidConfig,
                 config: FeaturemetricConfig):
        self.manifest, self.retrieval, self.poses = manifest, retrieval, poses
        self.refs, self.confidence, self.pyramid, self.config = refs, confidence, pyramid, config
        self.names = list(poses)
        self.centres = np.array([poses[n].center for n in self.names])
        self.axes = np.array([poses[n].R[2] for n in self.names])

    @classmethod
    def load(cls, map_dir, config: FeaturemetricConfig = FeaturemetricConfig()) -> FeaturemetricLocalizer:
        from .._libs import pycolmap
        from .hierarchical import HierarchicalLocalizer
        map_dir = Path(map_dir)
        manifest = read_method_manifest(map_dir, "featuremetric")
        retrieval = HierarchicalLocalizer.load(map_dir / "hierarchical")
        rec = pycolmap.Reconstruction(str(map_dir / "hierarchical" / "structure" / "model"))
        poses = {im.name: Pose.from_pycolmap(im.cam_from_world()) for im in rec.images.values()}
        refs, confidence, pyramid = read_references(map_dir / REFERENCES)
        return cls(manifest, retrieval, poses, refs, confidence, pyramid, config)

    def _nearest_images(self, pose: Pose) -> list[str]:
        """The mapping images nearest the pose's centre among those looking within 90° of it."""
        d = np.linalg.norm(self.centres - pose.center, axis=1)
        d[self.axes @ pose.R[2] < 0] = np.inf
        order = np.argsort(d)[: self.config.neighbours]
        return [self.names[i] for i in order if np.isfinite(d[i])]

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        """Retrieval (the hierarchical map's VLAD), then the refinement from the pose of
        each of the `starts` best retrieved images in turn; the result with most inliers
        wins. A result that `settle_ratio` of the points in view agree with ends the
        search early."""
        self._need_camera(query)
        timings: dict[str, float] = {}
        _, _, names = self.retrieval.retrieve(query, self.config.starts, timings)
        if not names:
            return Estimate.failed("no mapping image retrieved", timings=timings)
        pyr = self._pyramid(query, timings)
        tried = []
        for name in names:
            est = self._align(pyr, query.camera, self.poses[name], timings)
            tried.append((name, est))
            if est.success and est.inliers >= self.config.settle_ratio * est.details["in_view"]:
                break
        name, best = max(tried, key=lambda nr: (nr[1].success, nr[1].inliers))
        details = {**best.details, "retrieved": names, "start_image": name, "starts_tried": len(tried)}
        if not best.success and len(tried) > 1:
            details["attempts"] = {n: e.reason for n, e in tried}
            reason = f"from none of the {len(tried)} retrieved images' poses: {best.reason}"
            return Estimate.failed(reason, inliers=best.inliers, correspondences=best.correspondences,
                                   timings=timings, camera=query.camera, details=details)
        return replace(best, timings=timings, details=details)

    def refine(self, query: Query, cam_from_world: Pose) -> Estimate:
        """The coarse pose `cam_from_world` refined against the map; failed (with the
        reason) when too few points are in view or too few agree at the end."""
        self._need_camera(query)
        timings: dict[str, float] = {}
        pyr = self._pyramid(query, timings)
        return replace(self._align(pyr, query.camera, cam_from_world, timings), timings=timings)

    def _pyramid(self, query: Query, timings: dict):
        from ..imageio import read_rgb
        t = time.perf_counter()
        cam = query.camera
        img = read_rgb(query.image_path, self.pyramid.image_size, f"query {query.name}", cam, query.image)
        pyr = feature_pyramid(img, self.pyramid, original_size=(cam.width, cam.height))
        timings["dense_features"] = time.perf_counter() - t
        return pyr

    def _align(self, pyr, cam, cam_from_world: Pose, timings: dict) -> Estimate:
        t = time.perf_counter()
        images = self._nearest_images(cam_from_world)
        if not images:
            return Estimate.failed("no mapping image looks within 90° of the starting pose's direction",
                                   camera=cam)
        rows = np.unique(np.concatenate([self.retrieval.image_p3d[n] for n in images]))
        rows = rows[rows >= 0]
        res = refine_pose(pyr, cam, cam_from_world, self.retrieval.xyz[rows],
                          [r[rows] for r in self.refs], self.confidence[rows], self.config.refine)
        timings["refinement"] = timings.get("refinement", 0.0) + time.perf_counter() - t
        details = {"start": {"q_wxyz": cam_from_world.q.tolist(), "t": cam_from_world.t.tolist()},
                   "images": images, "levels": res.levels, "in_view": res.in_view}
        if res.cam_from_world is None:
            return Estimate.failed(res.reason, inliers=res.inliers, correspondences=res.points, camera=cam,
                                   details=details)
        return Estimate(res.cam_from_world, res.inliers, res.points, None, {}, cam, details)

    @staticmethod
    def _need_camera(query: Query) -> None:
        if query.camera is None:
            raise DataError(f"query {query.name}: featuremetric refinement needs the query's camera "
                            "(--camera, or --camera exif for the EXIF focal length; for vloc serve the camera "
                            "parameter): it does not estimate intrinsics")
