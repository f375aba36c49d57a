"""Structure-based localization: direct 2D-3D matching of the query's local features
against the map's point descriptors (FAISS), then PoseLib LO-RANSAC + refinement."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DataError, MapError
from ..estimation import PoseConfig, estimate_absolute_pose, estimate_absolute_pose_unknown_focal
from ..features import make_extractor
from ..imageio import read_image
from ..maps.mapdir import read_manifest
from ..maps.points import read_points
from ..matching.index import build_faiss_index, load_index, match_to_points
from .base import Estimate, Prior, Query


@dataclass(frozen=True)
class StructureConfig:
    ratio: float = 0.9                 # ratio test against the nearest *other* point
    index: str = "auto"                # auto | flat | ivf (auto: IVF above 60k descriptors)
    nprobe: int = 8                    # IVF cells visited per query descriptor (16: same accuracy on the demo, 1.4x slower)
    pose: PoseConfig = PoseConfig()

    def to_dict(self) -> dict:
        return asdict(self)


class StructureLocalizer:
    """Loads a structure map once; answers queries without changing it."""

    def __init__(self, map_dir: Path, manifest: dict, points, index, config: StructureConfig):
        self.map_dir = Path(map_dir)
        self.manifest = manifest
        self.points = points
        self.index = index
        self.config = config
        ext = dict(manifest["config"]["extractor"])
        self.resize_max = ext["resize_max"]
        self.extractor = make_extractor(ext.pop("name"), **ext)

    @classmethod
    def load(cls, map_dir, config: StructureConfig = StructureConfig(), verify: str = "size") -> StructureLocalizer:
        map_dir = Path(map_dir)
        manifest = read_manifest(map_dir, verify)
        if manifest.get("method") != "structure":
            raise MapError(f"map {map_dir} was built for method {manifest.get('method')!r}, not 'structure'")
        points = read_points(map_dir / "points.h5")
        index_file = map_dir / "index.faiss"
        if index_file.is_file() and config.index in ("auto", "ivf"):
            index = load_index(index_file)
        else:
            index = build_faiss_index(points.descriptors, config.index)
        if hasattr(index, "nprobe"):
            index.nprobe = config.nprobe
        return cls(map_dir, manifest, points, index, config)

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        if query.image is not None:
            img = query.image
            size = (img.shape[1], img.shape[0])
            if query.camera is not None and (query.camera.width, query.camera.height) != size:
                raise DataError(f"query {query.name}: image is {size[0]}x{size[1]} but the camera "
                                f"says {query.camera.width}x{query.camera.height}")
            from ..imageio import resize_max
            img = resize_max(img, self.resize_max)
        else:
            img, size = read_image(query.image_path, grayscale=True, max_size=self.resize_max)
            if query.camera is not None and (query.camera.width, query.camera.height) != size:
                raise DataError(f"query {query.name}: image {query.image_path} is {size[0]}x{size[1]} "
                                f"but the camera says {query.camera.width}x{query.camera.height}")
        timings["read"] = time.perf_counter() - t

        t = time.perf_counter()
        feats = self.extractor.extract(img, size)
        timings["features"] = time.perf_counter() - t

        t = time.perf_counter()
        qi, pi = match_to_points(self.index, self.points.desc_point, feats.descriptors, self.config.ratio)
        timings["matching"] = time.perf_counter() - t
        n = len(qi)
        if n == 0:
            return Estimate.failed(f"no 2D-3D match ({len(feats)} query keypoints)", timings=timings)

        t = time.perf_counter()
        p2d, p3d = feats.keypoints[qi], self.points.xyz[pi]
        # threshold is given at extraction resolution: scale it to the original image
        scale = max(size) / min(self.resize_max, max(size))
        cfg = replace(self.config.pose, max_reproj_error=self.config.pose.max_reproj_error * scale)
        if query.camera is not None:
            res = estimate_absolute_pose(p2d, p3d, query.camera, cfg)
        else:
            res = estimate_absolute_pose_unknown_focal(p2d, p3d, size[0], size[1], cfg)
        timings["pose"] = time.perf_counter() - t
        if res.cam_from_world is None:
            return Estimate(None, res.num_inliers, n, res.reason, timings, res.camera)
        return Estimate(res.cam_from_world, res.num_inliers, n, None, timings, res.camera)


def query_from_frame(frame, with_camera: bool = True) -> Query:
    return Query(frame.name, image_path=frame.image_path, camera=frame.camera if with_camera else None)
