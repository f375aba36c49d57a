"""Poses, cameras and pose errors. Numpy only (pycolmap for distortion models)."""
from .averaging import average_rotations, interpolate_poses
from .camera import CAMERA_MODELS, Camera
from .errors import pose_errors, rotation_error_deg, translation_error
from .pose import Pose, quat_to_rotmat, rotmat_to_quat

__all__ = [
    "average_rotations", "interpolate_poses", "CAMERA_MODELS", "Camera", "Pose", "pose_errors", "quat_to_rotmat",
    "rotation_error_deg", "rotmat_to_quat", "translation_error",
]
