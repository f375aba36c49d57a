"""Absolute pose from 2D-3D correspondences: PoseLib's LO-RANSAC (P3P hypotheses,
MSAC scoring, local optimisation, adaptive stopping) with non-linear refinement;
unknown focal length through pycolmap's estimator with focal estimation."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import poselib

from ..geometry import Camera, Pose


@dataclass(frozen=True)
class PoseConfig:
    max_reproj_error: float = 8.0      # RANSAC inlier threshold in pixels (original resolution)
    min_iterations: int = 100
    max_iterations: int = 10000
    success_prob: float = 0.9999
    min_inliers: int = 25              # fewer inliers -> failed estimate (a wrong pose on the
                                       # synthetic room had 18-19 inliers; correct ones >= 35)
    refine_loss: str = "CAUCHY"        # PoseLib bundle loss for the final refinement
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PoseResult:
    cam_from_world: Pose | None
    inliers: np.ndarray            # bool mask over correspondences
    camera: Camera | None
    reason: str | None = None
    iterations: int = 0

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def estimate_absolute_pose(p2d: np.ndarray, p3d: np.ndarray, camera: Camera,
                           cfg: PoseConfig = PoseConfig()) -> PoseResult:
    """Known intrinsics. `p2d` in vloc's pixel convention, at the camera's resolution."""
    n = len(p2d)
    if n < 4:
        return PoseResult(None, np.zeros(n, bool), camera, f"too few 2D-3D matches ({n}, need >= 4)")
    ransac = {"max_reproj_error": cfg.max_reproj_error, "min_iterations": cfg.min_iterations,
              "max_iterations": cfg.max_iterations, "success_prob": cfg.success_prob, "seed": cfg.seed}
    bundle = {"loss_type": cfg.refine_loss, "loss_scale": 1.0}
    pose, info = poselib.estimate_absolute_pose(np.ascontiguousarray(p2d, np.float64),
                                                np.ascontiguousarray(p3d, np.float64),
                                                camera.to_poselib(), ransac, bundle)
    inl = np.asarray(info["inliers"], dtype=bool)
    if inl.sum() < cfg.min_inliers:
        return PoseResult(None, inl, camera, f"too few inliers ({int(inl.sum())} of {n} matches, "
                          f"need {cfg.min_inliers})", info.get("iterations", 0))
    return PoseResult(Pose(pose.R, pose.t), inl, camera, None, info.get("iterations", 0))


def estimate_absolute_pose_unknown_focal(p2d: np.ndarray, p3d: np.ndarray, width: int, height: int,
                                         cfg: PoseConfig = PoseConfig()) -> PoseResult:
    """Unknown focal length (principal point at the image centre, no distortion):
    pycolmap's RANSAC with focal estimation (P4Pf-class), then refinement of pose and focal."""
    from .._libs import pycolmap
    n = len(p2d)
    if n < 5:
        return PoseResult(None, np.zeros(n, bool), None, f"too few 2D-3D matches ({n}, need >= 5)")
    cam = pycolmap.Camera(model="SIMPLE_PINHOLE", width=width, height=height,
                          params=[1.2 * max(width, height), width / 2, height / 2])
    est = {"estimate_focal_length": True,
           "ransac": {"max_error": cfg.max_reproj_error, "min_num_trials": cfg.min_iterations,
                      "max_num_trials": cfg.max_iterations, "confidence": cfg.success_prob}}
    ret = pycolmap.estimate_and_refine_absolute_pose(
        np.ascontiguousarray(p2d, np.float64), np.ascontiguousarray(p3d, np.float64), cam,
        estimation_options=est, refinement_options={"refine_focal_length": True})
    if ret is None:
        return PoseResult(None, np.zeros(n, bool), None, f"pose with unknown focal length failed ({n} matches)")
    inl = np.asarray(ret["inlier_mask"], dtype=bool)
    if inl.sum() < cfg.min_inliers:
        return PoseResult(None, inl, None, f"too few inliers ({int(inl.sum())} of {n} matches, "
                          f"need {cfg.min_inliers})")
    camera = Camera("SIMPLE_PINHOLE", width, height, tuple(cam.params))
    return PoseResult(Pose.from_pycolmap(ret["cam_from_world"]), inl, camera)
