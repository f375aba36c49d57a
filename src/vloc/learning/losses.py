"""Pose regression losses. Position errors are measured in the network's normalised
units ((c - mean) / scale, see `PoseRegressor`), so that beta and the learned weights
mean the same on every scene; rotation errors between unit quaternions take the
nearer of q and -q (the same rotation).

- hand-tuned (PoseNet, Kendall et al. 2015): |c - c^| + beta |r - r^|
- learned (Kendall & Cipolla 2017): |c - c^| exp(-s_c) + s_c + |r - r^| exp(-s_r) + s_r
- reprojection: the frame's 3D points projected with the predicted and the true pose,
  the pixel distance softly clamped (robust), averaged
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("hand-tuned", "learned", "reprojection")
WEIGHTING_INITS = ("kendall", "first-batch")     # how the learned weights start (LearnedWeighting)


def quaternion_distance(q_pred: torch.Tensor, q_true: torch.Tensor) -> torch.Tensor:
    """(B,) Euclidean distance between unit quaternions, the nearer of +q and -q.
    `q_pred` is normalised here (raw head outputs may be given)."""
    q_pred = F.normalize(q_pred, dim=-1, eps=1e-8)
    return torch.minimum((q_pred - q_true).norm(dim=-1), (q_pred + q_true).norm(dim=-1))


def pose_errors(out: torch.Tensor, positions_true: torch.Tensor, q_true: torch.Tensor):
    """Per-sample (position error, rotation error) of head outputs `out` (B, 7) against
    normalised true positions (B, 3) and unit quaternions (B, 4)."""
    return (out[:, :3] - positions_true).norm(dim=-1), quaternion_distance(out[:, 3:7], q_true)


def hand_tuned_loss(position_error: torch.Tensor, rotation_error: torch.Tensor, beta: float) -> torch.Tensor:
    return (position_error + beta * rotation_error).mean()


class LearnedWeighting(nn.Module):
    """Homoscedastic uncertainty weighting with trained log-variances s_c, s_r. For a
    fixed error e the minimum over s is at s = log e and equals 1 + log e: the
    weights cannot drive the loss down on their own.

    Start: Kendall & Cipolla's s_c = 0, s_r = -3, or (`from_first_batch`) the optimum
    for the first batch's errors, s = log of their mean, set on the first call."""

    def __init__(self, s_c: float = 0.0, s_r: float = -3.0, from_first_batch: bool = False):
        super().__init__()
        self.s_c = nn.Parameter(torch.tensor(float(s_c)))
        self.s_r = nn.Parameter(torch.tensor(float(s_r)))
        self.register_buffer("started", torch.tensor(not from_first_batch))

    def forward(self, position_error: torch.Tensor, rotation_error: torch.Tensor) -> torch.Tensor:
        if not bool(self.started):
            with torch.no_grad():
                self.s_c.fill_(torch.log(position_error.detach().mean().clamp_min(1e-6)))
                self.s_r.fill_(torch.log(rotation_error.detach().mean().clamp_min(1e-6)))
                self.started.fill_(True)
        return (position_error.mean() * torch.exp(-self.s_c) + self.s_c
                + rotation_error.mean() * torch.exp(-self.s_r) + self.s_r)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(B, 4) quaternions (w, x, y, z; normalised here) -> (B, 3, 3) rotations."""
    w, x, y, z = F.normalize(q, dim=-1, eps=1e-8).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of (..., 4) quaternions (w, x, y, z)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def quaternion_conjugate(q: torch.Tensor) -> torch.Tensor:
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def project(points_world: torch.Tensor, centres: torch.Tensor, q_cam_from_world: torch.Tensor,
            intrinsics: torch.Tensor, min_depth: torch.Tensor | float = 1e-6):
    """(B, K, 3) world points seen by cameras (centres (B, 3), rotations (B, 4),
    intrinsics (B, 4) = fx, fy, cx, cy) -> (B, K, 2) pixels and (B, K) depths. Depths
    are clamped at `min_depth` so points behind a predicted camera stay finite."""
    R = quaternion_to_matrix(q_cam_from_world)
    x_cam = torch.einsum("bij,bkj->bki", R, points_world - centres[:, None])
    z = x_cam[..., 2]
    zc = torch.maximum(z, torch.as_tensor(min_depth, dtype=z.dtype))
    uv = x_cam[..., :2] / zc[..., None] * intrinsics[:, None, :2] + intrinsics[:, None, 2:]
    return uv, z


def soft_clamp(error: torch.Tensor, threshold: float) -> torch.Tensor:
    """e below the threshold, sqrt(threshold * e) above it (continuous, still a gradient)."""
    return torch.where(error <= threshold, error, (threshold * error.clamp_min(threshold)).sqrt())


def reprojection_loss(centres: torch.Tensor, quaternions: torch.Tensor, centres_true: torch.Tensor,
                      q_true: torch.Tensor, points_world: torch.Tensor, intrinsics: torch.Tensor,
                      threshold: float = 100.0) -> torch.Tensor:
    """Mean softly clamped pixel distance between the points projected with the
    predicted and with the true pose (world units). A predicted depth is clamped at a
    tenth of the true one."""
    uv_true, z_true = project(points_world, centres_true, q_true, intrinsics)
    uv, _ = project(points_world, centres, quaternions, intrinsics, 0.1 * z_true.detach())
    return soft_clamp((uv - uv_true).norm(dim=-1), threshold).mean()


def relative_poses(centres: torch.Tensor, quaternions: torch.Tensor, i: torch.Tensor, j: torch.Tensor):
    """MapNet's relative terms for pairs (i, j): the centre difference c_j - c_i and the
    rotation q_j * q_i^-1 (cam_j from cam_i)."""
    return centres[j] - centres[i], quaternion_multiply(quaternions[j], quaternion_conjugate(quaternions[i]))
