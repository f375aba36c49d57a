"""What every feature-based localizer does with a query: rebuild the map's extractor,
read the image at the map's extraction size (checking it against the camera), and
estimate the pose from 2D-3D matches with a threshold scaled to the original image."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..errors import DataError
from ..estimation import PoseConfig, PoseResult, estimate_absolute_pose, estimate_absolute_pose_unknown_focal
from ..features import LocalExtractor, make_extractor
from ..features.base import reads_color
from ..imageio import read_image, resize_max
from .base import Query


def extractor_from_manifest(manifest: dict) -> tuple[LocalExtractor, int]:
    """The extractor a map was built with, and its longer-side size."""
    ext = dict(manifest["config"]["extractor"])
    return make_extractor(ext.pop("name"), **ext), ext["resize_max"]


def read_query(query: Query, max_size: int, color: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """(image at most `max_size` on its longer side, in grey unless `color`; original
    (width, height))."""
    if query.image is not None:
        img, size = resize_max(query.image, max_size), (query.image.shape[1], query.image.shape[0])
    else:
        img, size = read_image(query.image_path, grayscale=not color, max_size=max_size)
    if query.camera is not None and (query.camera.width, query.camera.height) != size:
        source = f"image {query.image_path}" if query.image is None else "image"
        raise DataError(f"query {query.name}: {source} is {size[0]}x{size[1]} but the camera says "
                        f"{query.camera.width}x{query.camera.height}")
    return img, size


def estimate_query_pose(p2d: np.ndarray, p3d: np.ndarray, query: Query, size: tuple[int, int],
                        max_size: int, cfg: PoseConfig) -> PoseResult:
    """Known or unknown intrinsics; the RANSAC threshold is given at extraction
    resolution and scaled here to the original image."""
    scale = max(size) / min(max_size, max(size))
    cfg = replace(cfg, max_reproj_error=cfg.max_reproj_error * scale)
    if query.camera is not None:
        return estimate_absolute_pose(p2d, p3d, query.camera, cfg)
    return estimate_absolute_pose_unknown_focal(p2d, p3d, size[0], size[1], cfg)


def read_method_manifest(map_dir, method: str, verify: str = "size") -> dict:
    """A map's checked manifest; a MapError if the map was built for another method."""
    from ..errors import MapError
    from ..maps.mapdir import read_manifest
    manifest = read_manifest(map_dir, verify)
    if manifest.get("method") != method:
        raise MapError(f"map {map_dir} was built for method {manifest.get('method')!r}, not {method!r}")
    return manifest


def query_features(query: Query, extractor: LocalExtractor, max_size: int, timings: dict):
    """Read and describe the query, adding 'read' and 'features' to `timings`.
    Returns (Features, original (width, height))."""
    t = time.perf_counter()
    img, size = read_query(query, max_size, reads_color(extractor))
    timings["read"] = time.perf_counter() - t
    t = time.perf_counter()
    feats = extractor.extract(img, size)
    timings["features"] = time.perf_counter() - t
    return feats, size
