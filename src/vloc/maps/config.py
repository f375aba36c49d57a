"""Map-building configuration: a frozen dataclass with defaults, from TOML or flags,
stored in the map's manifest."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..configs import check_keys
from ..errors import VlocError


@dataclass(frozen=True)
class MapConfig:
    features: str = "colmap-sift"      # registry name: colmap-sift, sift (OpenCV), rootsift
    resize_max: int = 1600             # longer side for feature extraction
    max_keypoints: int = 8192
    feature_options: dict = field(default_factory=dict)   # extractor-specific, e.g. contrast_threshold
    pairs: str = "auto"                # auto | exhaustive | poses | retrieval (auto: exhaustive up to 40
                                       # images, else poses, or retrieval for frames without poses)
    num_pairs: int = 20                # neighbours per image for pose-based or retrieval pairs
    max_pair_angle: float = 75.0       # degrees between optical axes for pose-based pairs
    matcher: str = "mnn-ratio"         # 2D-2D matching of map pairs: mnn-ratio | lightglue (aliked, disk)
    ratio: float = 0.0                 # Lowe's ratio for 2D-2D matching (mnn-ratio); 0: the feature's
                                       # tuned ratio (matching/ratios.py: SIFT 0.8, ALIKED and DISK 1.0)
    epipolar_threshold: float = 4.0    # px at extraction resolution, pose-based verification
    points: str = "auto"               # auto | triangulate | depth | sfm
    point_descriptors: str = "all"     # all (one per observation) | mean (one per point)
    two_view_tracks: bool = True       # keep points seen in two images only
    max_depth: float = 0.0             # RGB-D lifting: ignore depth beyond (0 = no limit)
    block_images: int = 25000          # known-pose maps above this many images are triangulated in
                                       # spatial blocks (memory bounded by a block; maps/blocked.py)

    def __post_init__(self):
        choices = {"pairs": ("auto", "exhaustive", "poses", "retrieval"),
                   "points": ("auto", "triangulate", "depth", "sfm"),
                   "point_descriptors": ("all", "mean"),
                   "matcher": ("mnn-ratio", "lightglue")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise VlocError(f"map option {key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.resize_max < 64:
            raise VlocError(f"resize_max must be >= 64, got {self.resize_max}")
        if self.block_images < 2:
            raise VlocError(f"block_images must be >= 2, got {self.block_images}")
        if not 0 <= self.ratio <= 1:
            raise VlocError(f"ratio must be in [0, 1] (0: the feature's tuned ratio), got {self.ratio}")

    @property
    def pair_ratio(self) -> float:
        """The ratio used for map pairs: `ratio`, or the feature's tuned one."""
        from ..matching.ratios import tuned_ratio
        return self.ratio or tuned_ratio(self.features)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MapConfig:
        check_keys(cls, d, "map option(s)")
        return cls(**d)
