"""SIFT and RootSIFT through OpenCV (DoG detector, 128-D descriptors)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .._libs import cv2
from .base import Features


@dataclass(frozen=True)
class SiftConfig:
    max_keypoints: int = 4096          # strongest by detector response; 0 = no limit
    resize_max: int = 1600             # longer image side for extraction
    contrast_threshold: float = 0.04   # OpenCV default; lower finds more on weak texture (slower)
    edge_threshold: float = 10.0
    n_octave_layers: int = 3
    root: bool = False                 # RootSIFT (Arandjelovic & Zisserman 2012)


class Sift:
    """OpenCV SIFT; `root=True` gives RootSIFT (L1-normalise, square root)."""

    def __init__(self, config: SiftConfig = SiftConfig()):
        self.config = config
        self.name = "rootsift" if config.root else "sift"
        self._sift = cv2.SIFT_create(nfeatures=config.max_keypoints, nOctaveLayers=config.n_octave_layers,
                                     contrastThreshold=config.contrast_threshold,
                                     edgeThreshold=config.edge_threshold)

    def config_dict(self) -> dict:
        return {"name": self.name, **asdict(self.config)}

    def extract(self, image: np.ndarray, original_size: tuple[int, int]) -> Features:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        kps, desc = self._sift.detectAndCompute(gray, None)
        n = len(kps)
        if n == 0:
            return empty_features(original_size, 128)
        xy = np.array([k.pt for k in kps], dtype=np.float32)
        resp = np.array([k.response for k in kps], dtype=np.float32)
        size = np.array([k.size for k in kps], dtype=np.float32)
        if self.config.max_keypoints and n > self.config.max_keypoints:
            keep = np.argsort(-resp, kind="stable")[: self.config.max_keypoints]
            xy, resp, size, desc = xy[keep], resp[keep], size[keep], desc[keep]
        desc = desc.astype(np.float32)
        if self.config.root:
            desc /= np.maximum(desc.sum(1, keepdims=True), 1e-12)
            desc = np.sqrt(desc)
        else:
            desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        sx = original_size[0] / gray.shape[1]
        sy = original_size[1] / gray.shape[0]
        # OpenCV: pixel centres at integers -> vloc/COLMAP: +0.5; then to original size
        kp = (xy + 0.5) * np.array([sx, sy], dtype=np.float32)
        return Features(kp, desc, resp, size * (sx + sy) / 2, tuple(original_size))


def empty_features(original_size, dim: int) -> Features:
    z = np.zeros(0, np.float32)
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, dim), np.float32), z, z,
                    tuple(original_size))
