"""Rigid transforms. Inside vloc a camera pose is always `cam_from_world`
(x_cam = R @ X_world + t, OpenCV axes: x right, y down, z forward)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

_ROT_TOL = 1e-3


def quat_to_rotmat(q_wxyz) -> np.ndarray:
    """Unit quaternion (w, x, y, z), Hamilton convention, to a rotation matrix."""
    q = np.asarray(q_wxyz, dtype=np.float64).reshape(4)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise DataError(f"invalid quaternion {q.tolist()}")
    w, x, y, z = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrix to unit quaternion (w, x, y, z) with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    K = np.array([
        [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
        [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
        [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
        [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
    ]) / 3.0
    vals, vecs = np.linalg.eigh(K)
    x, y, z, w = vecs[:, np.argmax(vals)]
    q = np.array([w, x, y, z])
    return q if w >= 0 else -q


def nearest_rotation(M: np.ndarray) -> np.ndarray:
    """Closest rotation matrix to M (Frobenius), e.g. to re-orthonormalise 7-Scenes poses."""
    U, _, Vt = np.linalg.svd(np.asarray(M, dtype=np.float64))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


@dataclass(frozen=True, eq=False)
class Pose:
    """A rigid transform `b_from_a`: X_b = R @ X_a + t. The variable name says the direction."""

    R: np.ndarray
    t: np.ndarray

    def __post_init__(self):
        R = np.array(self.R, dtype=np.float64).reshape(3, 3)
        t = np.array(self.t, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
            raise DataError("pose contains NaN or infinite values")
        if np.abs(R @ R.T - np.eye(3)).max() > _ROT_TOL or abs(np.linalg.det(R) - 1) > _ROT_TOL:
            raise DataError(f"pose rotation is not a rotation matrix (det={np.linalg.det(R):.4f})")
        # project onto SO(3): file formats store rotations with ~1e-7 errors, which
        # would otherwise swamp sub-0.01 degree rotation errors
        R = nearest_rotation(R)
        R.setflags(write=False)
        t.setflags(write=False)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t)

    # construction -------------------------------------------------------
    @classmethod
    def identity(cls) -> Pose:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_qt(cls, q_wxyz, t) -> Pose:
        return cls(quat_to_rotmat(q_wxyz), t)

    @classmethod
    def from_pycolmap(cls, rigid) -> Pose:
        """From a pycolmap Rigid3d (e.g. `image.cam_from_world()`); duck-typed, so this
        module needs no pycolmap."""
        return cls(np.asarray(rigid.rotation.matrix()), np.asarray(rigid.translation))

    @classmethod
    def from_matrix(cls, M, orthonormalize: bool = False) -> Pose:
        """From a 3x4 or 4x4 matrix [R | t]."""
        M = np.asarray(M, dtype=np.float64)
        if M.shape not in ((3, 4), (4, 4)):
            raise DataError(f"pose matrix must be 3x4 or 4x4, got {M.shape}")
        R = nearest_rotation(M[:3, :3]) if orthonormalize else M[:3, :3]
        return cls(R, M[:3, 3])

    # views --------------------------------------------------------------
    @property
    def q(self) -> np.ndarray:
        """Rotation as a unit quaternion (w, x, y, z)."""
        return rotmat_to_quat(self.R)

    def matrix(self) -> np.ndarray:
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = self.R, self.t
        return M

    def inverse(self) -> Pose:
        return Pose(self.R.T, -self.R.T @ self.t)

    @property
    def center(self) -> np.ndarray:
        """For a `cam_from_world` pose: the camera centre in world coordinates."""
        return -self.R.T @ self.t

    def __mul__(self, other: Pose) -> Pose:
        """c_from_b * b_from_a = c_from_a."""
        return Pose(self.R @ other.R, self.R @ other.t + self.t)

    def transform(self, points: np.ndarray) -> np.ndarray:
        """Apply to (N, 3) points."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def __repr__(self) -> str:
        q = np.round(self.q, 6).tolist()
        return f"Pose(q_wxyz={q}, t={np.round(self.t, 6).tolist()})"
