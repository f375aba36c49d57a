"""SIFT through COLMAP (pycolmap, VLFeat-style DoG, RootSIFT-normalised descriptors):
the detector COLMAP and hloc ('dog') use, slower than OpenCV's but identical to what
SfM pseudo ground truth was made with."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .._libs import cv2, pycolmap
from .base import Features
from .sift import empty_features


@dataclass(frozen=True)
class ColmapSiftConfig:
    max_keypoints: int = 8192
    resize_max: int = 1600
    first_octave: int = 0              # hloc's choice; -1 upsamples (more, smaller features, 4x slower)
    peak_threshold: float = 0.01       # hloc's DoG setting (COLMAP: 0.0067, ~1.5x more keypoints)
    edge_threshold: float = 10.0


class ColmapSift:
    name = "colmap-sift"
    single_threaded = True          # one core per image: map building uses 2 processes

    def __init__(self, config: ColmapSiftConfig = ColmapSiftConfig()):
        self.config = config
        opts = pycolmap.FeatureExtractionOptions()
        opts.num_threads = 2
        opts.max_image_size = 100000           # vloc resizes; COLMAP must not
        opts.sift.max_num_features = config.max_keypoints or 1_000_000
        opts.sift.first_octave = config.first_octave
        opts.sift.peak_threshold = config.peak_threshold
        opts.sift.edge_threshold = config.edge_threshold
        self._extractor = pycolmap.FeatureExtractor.create(opts, pycolmap.Device.cpu)

    def config_dict(self) -> dict:
        return {"name": self.name, **asdict(self.config)}

    def extract(self, image: np.ndarray, original_size: tuple[int, int]) -> Features:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        kps, desc = self._extractor.extract_from_uint8_array(np.ascontiguousarray(gray))
        if len(kps) == 0:
            return empty_features(original_size, 128)
        xy = np.array([(k.x, k.y) for k in kps], dtype=np.float32)      # COLMAP convention already
        scale = np.array([k.compute_scale() for k in kps], dtype=np.float32)
        d = np.asarray(desc.data, dtype=np.float32)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        sx, sy = original_size[0] / gray.shape[1], original_size[1] / gray.shape[0]
        # COLMAP orders by scale, not strength; all kept keypoints get score 1
        return Features(xy * np.array([sx, sy], np.float32), d, np.ones(len(xy), np.float32),
                        scale * (sx + sy) / 2, tuple(original_size))
