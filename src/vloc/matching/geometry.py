"""Geometric checks of 2D-2D matches: with known poses (epipolar error) or without
(PoseLib's LO-RANSAC on the fundamental matrix)."""
from __future__ import annotations

import numpy as np

from ..geometry import Camera, Pose


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def epipolar_errors(kp0: np.ndarray, kp1: np.ndarray, cam0: Camera, cam1: Camera,
                    cam0_from_world: Pose, cam1_from_world: Pose) -> np.ndarray:
    """Symmetric epipolar distance in pixels of matched keypoints (K, 2) each, from the
    known poses; distortion is removed first."""
    x0 = np.c_[cam0.unproject(kp0), np.ones(len(kp0))]
    x1 = np.c_[cam1.unproject(kp1), np.ones(len(kp1))]
    rel = cam1_from_world * cam0_from_world.inverse()
    E = _skew(rel.t) @ rel.R
    l1 = x0 @ E.T          # epipolar lines in image 1 (normalized coordinates)
    l0 = x1 @ E
    num = np.abs(np.sum(x1 * l1, axis=1))
    d1 = num / np.maximum(np.linalg.norm(l1[:, :2], axis=1), 1e-12) * cam1.fx
    d0 = num / np.maximum(np.linalg.norm(l0[:, :2], axis=1), 1e-12) * cam0.fx
    return np.maximum(d0, d1)


def verify_with_poses(kp0, kp1, matches, cam0, cam1, pose0, pose1, threshold_px: float) -> np.ndarray:
    """Keep the matches whose epipolar error is below `threshold_px`."""
    if len(matches) == 0:
        return matches
    err = epipolar_errors(kp0[matches[:, 0]], kp1[matches[:, 1]], cam0, cam1, pose0, pose1)
    return matches[err < threshold_px]


def verify_fundamental(kp0, kp1, matches, threshold_px: float, min_inliers: int = 15) -> np.ndarray:
    """Keep the inliers of a fundamental matrix fitted by PoseLib's LO-RANSAC."""
    import poselib
    if len(matches) < min_inliers:
        return matches[:0]
    _, info = poselib.estimate_fundamental(kp0[matches[:, 0]].astype(np.float64),
                                           kp1[matches[:, 1]].astype(np.float64),
                                           {"max_epipolar_error": threshold_px}, {})
    inl = np.asarray(info["inliers"], dtype=bool)
    return matches[inl] if inl.sum() >= min_inliers else matches[:0]
