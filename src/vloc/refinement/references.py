"""Reference features of a map's 3D points: each point's pyramid features sampled at
its observations in the mapping images, averaged and renormalised per level. The
length of the mean of the unit features before renormalisation (1: every view agrees)
is the point's confidence, a multi-view consistency that stands in for PixLoc's
learned confidence. Stored in `references.h5` (float16 features, float32 confidence)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import MapError
from .pyramid import LEVELS, PyramidConfig, feature_pyramid

FILE = "references.h5"


def point_references(model_dir: Path, image_paths: dict[str, Path], config: PyramidConfig,
                     progress: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
    """(features per level (n_points, D_level) float32, confidence (n_points,)) for the
    points of the COLMAP model at `model_dir`, rows in sorted point-id order (as
    points.h5)."""
    from .._libs import pycolmap
    from ..imageio import read_image
    from ..progress import progress_bar
    rec = pycolmap.Reconstruction(str(model_dir))
    ids = np.array(sorted(rec.points3D), dtype=np.int64)
    sums: list[np.ndarray | None] = [None] * LEVELS
    counts = np.zeros(len(ids))
    for im in progress_bar(list(rec.images.values()), "reference features", progress):
        obs = im.get_observation_points2D()
        if not obs:
            continue
        xy = np.array([p.xy for p in obs], dtype=np.float64)
        rows = np.searchsorted(ids, np.array([p.point3D_id for p in obs], dtype=np.int64))
        img, size = read_image(image_paths[im.name], max_size=config.image_size)
        pyr = feature_pyramid(img, config, original_size=size)
        distinct = len(np.unique(rows)) == len(rows)      # one observation per point and image, as a rule
        for level in range(LEVELS):
            h, w = pyr.levels[level].shape[:2]             # a border observation: the nearest cell
            f, _ = pyr.sample(level, np.clip(pyr.to_level(level, xy), 0, [w - 1, h - 1]))
            if sums[level] is None:
                sums[level] = np.zeros((len(ids), f.shape[1]))
            if distinct:
                sums[level][rows] += f                    # much faster than np.add.at
            else:
                np.add.at(sums[level], rows, f)
        np.add.at(counts, rows, 1)
    if sums[0] is None:
        raise MapError("no observed map point to describe")
    means = [s / np.maximum(counts, 1)[:, None] for s in sums]
    norms = [np.linalg.norm(m, axis=1) for m in means]
    confidence = np.mean(norms, axis=0)
    refs = [(m / np.maximum(n, 1e-12)[:, None]).astype(np.float32) for m, n in zip(means, norms)]
    return refs, confidence.astype(np.float32)


def write_references(path: Path, refs: list[np.ndarray], confidence: np.ndarray, config: PyramidConfig) -> None:
    with h5py.File(path, "w") as f:
        for level, r in enumerate(refs):
            f.create_dataset(f"level{level}", data=r.astype(np.float16))
        f.create_dataset("confidence", data=confidence.astype(np.float32))
        for k, v in config.to_dict().items():
            f.attrs[k] = v


def read_references(path: Path) -> tuple[list[np.ndarray], np.ndarray, PyramidConfig]:
    try:
        with h5py.File(path, "r") as f:
            refs = [f[f"level{level}"][()].astype(np.float32) for level in range(LEVELS)]
            confidence = f["confidence"][()].astype(np.float32)
            config = PyramidConfig(model=str(f.attrs["model"]), image_size=int(f.attrs["image_size"]))
    except (OSError, KeyError) as e:
        raise MapError(f"cannot read reference features {path}: {e}") from None
    return refs, confidence, config
