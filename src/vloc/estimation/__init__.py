"""Robust pose estimation from correspondences (PoseLib and pycolmap adapters)."""
from .absolute import PoseConfig, PoseResult, estimate_absolute_pose, estimate_absolute_pose_unknown_focal

__all__ = ["PoseConfig", "PoseResult", "estimate_absolute_pose", "estimate_absolute_pose_unknown_focal"]
