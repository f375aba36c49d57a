"""Line-cloud localization (privacy-preserving, Speciale et al. CVPR 2019): the query's
local features are matched to the map's line descriptors as the structure localizer
matches point descriptors (FAISS, ratio test between distinct lines), and the pose is
estimated from the 2D point to 3D line matches by our LO-RANSAC around PoseLib's
6-point generalized solver (lines/ransac.py). The map holds no 3D point."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VlocError
from ..geometry import Pose
from ..lines.cloud import LINES_FILE, LineCloud, read_lines
from ..lines.mapping import LineMapConfig, build_lines_map
from ..lines.ransac import LineRansacConfig, ransac_lines
from ..matching.index import build_faiss_index, load_index, match_to_owners
from .base import Estimate, Prior, Query
from .query_io import extractor_from_manifest, query_features, read_method_manifest

__all__ = ["LineCloudLocalizer", "LineLocalizerConfig", "LineMapConfig", "build_lines_map", "match_to_lines"]


@dataclass(frozen=True)
class LineLocalizerConfig:
    ratio: float = 0.9                 # ratio test against the nearest *other* line (as structure's)
    index: str = "auto"                # auto | flat | ivf
    nprobe: int = 8
    ransac: LineRansacConfig = field(default_factory=LineRansacConfig)

    def __post_init__(self):
        if not 0 < self.ratio <= 1:
            raise VlocError(f"ratio must be in (0, 1], got {self.ratio}")

    def to_dict(self) -> dict:
        return asdict(self)


def match_to_lines(index, owner: np.ndarray, query_desc: np.ndarray, ratio: float = 0.9, k: int = 4
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query indices, line indices, distance ratios) of the matches passing the ratio
    test against the nearest descriptor of a *different* line; the ratio orders the
    matches for sampling."""
    return match_to_owners(index, owner, query_desc, ratio, k)


class LineCloudLocalizer:
    """Loads a line-cloud map once; answers queries without changing it."""

    def __init__(self, cloud: LineCloud, index, manifest: dict, config: LineLocalizerConfig,
                 map_dir: Path | None = None):
        self.cloud = cloud
        self.index = index
        self.manifest = manifest
        self.config = config
        self.map_dir = map_dir
        self.extractor, self.resize_max = extractor_from_manifest(manifest)

    @classmethod
    def load(cls, map_dir, config: LineLocalizerConfig = LineLocalizerConfig(), verify: str = "size"
             ) -> LineCloudLocalizer:
        map_dir = Path(map_dir)
        manifest = read_method_manifest(map_dir, "lines", verify)
        cloud = read_lines(map_dir / LINES_FILE)
        index_file = map_dir / "index.faiss"
        if index_file.is_file() and config.index in ("auto", "ivf"):
            index = load_index(index_file)
        else:
            index = build_faiss_index(cloud.descriptors, config.index)
        return cls(cloud, cls._probe(index, config), manifest, config, map_dir)

    @classmethod
    def from_cloud(cls, cloud: LineCloud, manifest: dict, config: LineLocalizerConfig = LineLocalizerConfig()
                   ) -> LineCloudLocalizer:
        """A localizer on a line cloud in memory (e.g. a sparsified one); `manifest`
        gives the extractor (a structure or line map's)."""
        return cls(cloud, cls._probe(build_faiss_index(cloud.descriptors, config.index), config), manifest, config)

    @staticmethod
    def _probe(index, config):
        if hasattr(index, "nprobe"):
            index.nprobe = config.nprobe
        return index

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        timings: dict[str, float] = {}
        if query.camera is None:
            return Estimate.failed("the line-cloud localizer needs the query's intrinsics (no minimal solver "
                                   "for point-to-line matches with an unknown focal length)", timings=timings)
        feats, size = query_features(query, self.extractor, self.resize_max, timings)
        return self.localize_features(feats, size, query, timings)

    def localize_features(self, feats, size: tuple[int, int], query: Query, timings: dict | None = None
                          ) -> Estimate:
        """The pose from already extracted query features (original resolution keypoints)."""
        timings = {} if timings is None else timings
        camera = query.camera
        if camera is None:
            return Estimate.failed("the line-cloud localizer needs the query's intrinsics", timings=timings)
        t = time.perf_counter()
        qi, li, quality = match_to_lines(self.index, self.cloud.desc_line, feats.descriptors, self.config.ratio)
        timings["matching"] = time.perf_counter() - t
        n = len(qi)
        if n == 0:
            return Estimate.failed(f"no 2D-line match ({len(feats)} query keypoints)", timings=timings,
                                   camera=camera)
        t = time.perf_counter()
        xy = camera.unproject(feats.keypoints[qi])
        bearings = np.hstack([xy, np.ones((n, 1))])
        bearings /= np.linalg.norm(bearings, axis=1, keepdims=True)
        # threshold: pixels at the extraction resolution -> original pixels -> angle
        scale = max(size) / min(self.resize_max, max(size))
        threshold = self.config.ransac.max_error * scale / np.sqrt(camera.fx * camera.fy)
        res = ransac_lines(bearings, self.cloud.anchors[li], self.cloud.directions[li], threshold,
                           self.config.ransac, order=np.argsort(quality, kind="stable"))
        timings["pose"] = time.perf_counter() - t
        details = {"iterations": res.iterations, "hypotheses": res.hypotheses, "lines": len(self.cloud)}
        if not res.success:
            return Estimate(None, res.num_inliers, n, res.reason, timings, camera, details)
        return Estimate(Pose(res.R, res.t), res.num_inliers, n, None, timings, camera, details)
