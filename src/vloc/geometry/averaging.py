"""Averaging poses: weighted camera centres and the weighted rotation mean of
Markley et al. (2007): the principal eigenvector of sum w_i q_i q_i^T, which is
insensitive to the sign of each quaternion."""
from __future__ import annotations

import numpy as np

from .pose import Pose, quat_to_rotmat


def average_rotations(rotations, weights=None) -> np.ndarray:
    qs = np.array([Pose(R, np.zeros(3)).q for R in rotations])
    w = np.ones(len(qs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(qs) == 0 or w.sum() <= 0:
        raise ValueError("need at least one rotation with a positive weight")
    M = (qs * w[:, None]).T @ qs
    _, vecs = np.linalg.eigh(M)
    return quat_to_rotmat(vecs[:, -1])


def interpolate_poses(cams_from_world: list[Pose], weights=None) -> Pose:
    """A `cam_from_world` pose whose centre is the weighted mean of the centres and
    whose rotation is the weighted rotation mean."""
    w = np.ones(len(cams_from_world)) if weights is None else np.asarray(weights, dtype=np.float64)
    centres = np.array([p.center for p in cams_from_world])
    c = (w[:, None] * centres).sum(0) / w.sum()
    R = average_rotations([p.R for p in cams_from_world], w)
    return Pose(R, -R @ c)
