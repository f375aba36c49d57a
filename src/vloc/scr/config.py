"""The scene coordinate regression forest's configuration: training, leaves and queries
(stored in the map's manifest)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..configs import check_keys
from ..errors import VlocError
from ..estimation import PoseConfig
from .kabsch import KabschConfig


@dataclass(frozen=True)
class ForestConfig:
    trees: int = 5
    tree_depth: int = 16               # Shotton et al.: 16
    min_samples_leaf: int = 8          # a node with fewer than 2x this is a leaf
    samples_per_frame: int = 500       # training pixels per mapping frame (drawn per tree)
    features_per_node: int = 128       # random candidate features per node
    node_samples: int = 1024           # a node's split is chosen on at most this many of its pixels
    max_offset: float = 0.3            # metres: probe offsets, pixel offset = delta * f / D(p)
                                       # (Shotton et al.: +-130 px m at f = 585, i.e. ~0.22 m)
    depth_share: float = 0.5           # share of depth-difference features (the RGB-D forest)
    max_size: int = 320                # longer image side the forest works at
    max_depth: float = 0.0             # metres: ignore depth beyond (0 = no limit)
    leaf_capacity: int = 64            # scene coordinates kept per leaf (reservoir) for mean shift
    max_modes: int = 3                 # modes kept per leaf
    bandwidth: float = 0.1             # metres: mean-shift Gaussian kernel
    rgb_forest: bool = True            # also train a colour-only forest (fixed offset scale) for PnP
    query_pixels: int = 2000           # pixels sampled per query
    ransac: KabschConfig = KabschConfig()
    # PnP threshold in px at the forest's working size; on the small test room wrong poses
    # had up to 78 inliers of 6000 correspondences, right ones >= 197
    pnp: PoseConfig = PoseConfig(max_reproj_error=4.0, min_inliers=100)
    seed: int = 0

    def __post_init__(self):
        positive = ("trees", "tree_depth", "min_samples_leaf", "samples_per_frame", "features_per_node",
                    "node_samples", "leaf_capacity", "max_modes", "query_pixels")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise VlocError(f"forest option {key} must be >= 1, got {getattr(self, key)}")
        if self.max_size < 16:
            raise VlocError(f"forest option max_size must be >= 16, got {self.max_size}")
        if not (self.max_offset > 0 and self.bandwidth > 0 and self.max_depth >= 0):
            raise VlocError("forest options max_offset and bandwidth must be > 0, max_depth >= 0")
        if not 0 <= self.depth_share <= 1:
            raise VlocError(f"forest option depth_share must be in [0, 1], got {self.depth_share}")
        r = self.ransac
        if not (r.inlier_threshold > 0 and min(r.hypotheses, r.max_attempts, r.score_points, r.refine_top) >= 1
                and r.min_inliers >= 3):
            raise VlocError("forest ransac: inlier_threshold > 0, hypotheses, max_attempts, score_points, "
                            "refine_top >= 1 and min_inliers >= 3 are needed")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ForestConfig:
        check_keys(cls, d, "forest map option(s)")
        d = dict(d)
        for key, typ in (("ransac", KabschConfig), ("pnp", PoseConfig)):
            if isinstance(d.get(key), dict):
                check_keys(typ, d[key], f"forest {key} option(s)")
                d[key] = typ(**d[key])
        return cls(**d)
