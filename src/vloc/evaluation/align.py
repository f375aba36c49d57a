"""Evaluating against a map made by structure-from-motion (photos without poses): its
world frame and scale are SfM's own, so its estimates are carried into the ground
truth's frame by the similarity that best maps the map images' camera centres onto
the ground-truth centres of the frames of the same names (pycolmap's estimate_sim3d,
least squares). Names match exactly, else by file name when those are unique."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..geometry import Pose

MODEL_DIRS = ("model", "structure/model", "hierarchical/structure/model")   # by map kind


@dataclass(frozen=True)
class Alignment:
    """gt_from_map: X_gt = scale * R X_map + t."""
    scale: float
    R: np.ndarray
    t: np.ndarray
    images: int                 # map images matched to ground-truth frames
    rms: float                  # of their centres after alignment, ground-truth units

    def pose_to_gt(self, cam_from_map: Pose) -> Pose:
        """The same camera in the ground truth's frame and units."""
        R = cam_from_map.R @ self.R.T
        return Pose(R, self.scale * cam_from_map.t - R @ self.t)

    def to_dict(self) -> dict:
        return {"images": self.images, "scale": self.scale, "rms": self.rms}


def _sfm_model(map_dir: Path) -> Path | None:
    """The COLMAP model of a map whose points came from SfM, else None."""
    for rel in MODEL_DIRS:
        model = map_dir / rel
        manifest = model.parent / "manifest.json"
        if model.is_dir() and manifest.is_file():
            try:
                stats = json.loads(manifest.read_text()).get("stats", {})
            except (OSError, ValueError):
                return None
            return model if stats.get("points_mode") == "sfm" else None
    return None


def _match_names(map_names: list[str], frames) -> dict[str, object]:
    by_name = {f.name: f for f in frames}
    out = {n: by_name[n] for n in map_names if n in by_name}
    if len(out) >= 3:
        return out
    base = {}
    for f in frames:
        base.setdefault(Path(f.name).name, []).append(f)
    map_base = [Path(n).name for n in map_names]
    return {n: base[b][0] for n, b in zip(map_names, map_base)
            if len(base.get(b, [])) == 1 and map_base.count(b) == 1}


def sfm_alignment(map_dir, frames) -> Alignment | None:
    """For an SfM map: the similarity from its frame to that of `frames` (posed ground
    truth); None for a map built from known poses. A DataError when fewer than 3 of
    the map's images are among `frames`."""
    from .._libs import pycolmap
    model = _sfm_model(Path(map_dir))
    if model is None:
        return None
    rec = pycolmap.Reconstruction(str(model))
    images = {im.name: im for im in rec.images.values()}
    matched = _match_names(sorted(images), [f for f in frames if f.has_pose])
    if len(matched) < 3:
        raise DataError(f"map {map_dir} was made by structure-from-motion and only {len(matched)} of its "
                        f"{len(images)} images are posed frames of this dataset: cannot align it to the "
                        "ground truth (3 needed)")
    names = sorted(matched)
    src = np.array([images[n].projection_center() for n in names])
    dst = np.array([matched[n].cam_from_world.center for n in names])
    sim = pycolmap.estimate_sim3d(src, dst)
    if sim is None:
        raise DataError(f"cannot align map {map_dir} to the ground truth (degenerate camera centres)")
    rms = float(np.sqrt(np.mean(np.sum((sim * src - dst) ** 2, axis=1))))
    return Alignment(float(sim.scale), np.asarray(sim.rotation.matrix()), np.asarray(sim.translation),
                     len(names), rms)
