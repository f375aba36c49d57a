"""Pose errors as the field reports them."""
from __future__ import annotations

import numpy as np

from .pose import Pose


def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """Angle of R_est @ R_gt.T in degrees (clipped arccos, so never NaN)."""
    c = (np.trace(np.asarray(R_est) @ np.asarray(R_gt).T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def translation_error(est_cam_from_world: Pose, gt_cam_from_world: Pose) -> float:
    """Distance between the camera centres (scene units)."""
    return float(np.linalg.norm(est_cam_from_world.center - gt_cam_from_world.center))


def pose_errors(est_cam_from_world: Pose, gt_cam_from_world: Pose) -> tuple[float, float]:
    """(translation error in scene units, rotation error in degrees)."""
    return (translation_error(est_cam_from_world, gt_cam_from_world),
            rotation_error_deg(est_cam_from_world.R, gt_cam_from_world.R))
