"""Structure-based localization: direct 2D-3D matching of the query's local features
against the map's point descriptors (FAISS), then PoseLib LO-RANSAC + refinement."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..estimation import PoseConfig
from ..maps.points import read_points
from ..matching.index import build_faiss_index, load_index, match_to_points
from .base import Estimate, Prior, Query
from .query_io import estimate_query_pose, extractor_from_manifest, query_features, read_method_manifest


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
        self.extractor, self.resize_max = extractor_from_manifest(manifest)

    @classmethod
    def load(cls, map_dir, config: StructureConfig = StructureConfig(), verify: str = "size") -> StructureLocalizer:
        map_dir = Path(map_dir)
        manifest = read_method_manifest(map_dir, "structure", verify)
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
        feats, size = query_features(query, self.extractor, self.resize_max, timings)

        t = time.perf_counter()
        qi, pi = match_to_points(self.index, self.points.desc_point, feats.descriptors, self.config.ratio)
        timings["matching"] = time.perf_counter() - t
        n = len(qi)
        if n == 0:
            return Estimate.failed(f"no 2D-3D match ({len(feats)} query keypoints)", timings=timings)

        t = time.perf_counter()
        res = estimate_query_pose(feats.keypoints[qi], self.points.xyz[pi], query, size, self.resize_max,
                                  self.config.pose)
        timings["pose"] = time.perf_counter() - t
        return Estimate(res.cam_from_world, res.num_inliers, n, res.reason, timings, res.camera)


def query_from_frame(frame, with_camera: bool = True) -> Query:
    return Query(frame.name, image_path=frame.image_path, camera=frame.camera if with_camera else None)
