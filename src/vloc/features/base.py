"""Local features: one interface for every extractor (SIFT now, learned ones later)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Features:
    """Keypoints of one image in vloc's pixel convention (COLMAP: origin at the
    top-left corner) at the ORIGINAL image resolution, with L2-normalised descriptors."""

    keypoints: np.ndarray     # (N, 2) float32
    descriptors: np.ndarray   # (N, D) float32 (or float16 on disk), unit L2 norm
    scores: np.ndarray        # (N,) float32, detector response
    scales: np.ndarray        # (N,) float32, keypoint size in original pixels
    image_size: tuple[int, int]   # original (width, height)

    def __len__(self) -> int:
        return len(self.keypoints)

    def subset(self, idx) -> Features:
        return Features(self.keypoints[idx], self.descriptors[idx], self.scores[idx],
                        self.scales[idx], self.image_size)


class LocalExtractor(Protocol):
    """`color_input` (optional, default False): whether map and query images are read
    in colour for this extractor (see `reads_color`)."""
    name: str

    def extract(self, image: np.ndarray, original_size: tuple[int, int]) -> Features:
        """`image`: uint8 gray or RGB, possibly downscaled from `original_size` (w, h)."""
        ...

    def config_dict(self) -> dict: ...


def reads_color(extractor) -> bool:
    """Whether images are read in colour (RGB) for `extractor`, else in grey."""
    return bool(getattr(extractor, "color_input", False))


def config_dict(cfg) -> dict:
    return asdict(cfg)
