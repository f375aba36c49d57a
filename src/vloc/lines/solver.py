"""Pose from 2D point to 3D line correspondences: the minimal solver (PoseLib's
`gen_relpose_6pt`: the map's lines are the rays of a generalized camera, the query
the pinhole one, as in Speciale et al. CVPR 2019), the point-to-line residual and
its non-linear refinement (written here: PoseLib has no point-line refinement).

Residual: the sine of the angle between the query's ray (unit bearing) and the
plane through the camera centre and the 3D line, i.e. the angular distance of the
keypoint to the line's image (about pixels / focal near the image centre). The ray's
point closest to the line must lie in front of the camera (cheirality)."""
from __future__ import annotations

import numpy as np
import poselib
from scipy.spatial.transform import Rotation

# gen_relpose_6pt keeps a solution only if each 3D point lies at a positive distance
# along x1 from p1: anchors are moved back along their lines by more than the scene's
# extent (in normalised units, see `normalise`), so that no true point is behind its anchor.
SHIFT = 50.0


def normalise(anchors: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Anchors in a frame centred on the lines (median anchor) and scaled to a unit
    spread (90th percentile of the anchors' distances): (anchors', centre, scale).
    A pose (R, t') found there is (R, scale * t' - R @ centre) in map coordinates."""
    a = np.asarray(anchors, np.float64)
    c = np.median(a, axis=0)
    s = float(np.percentile(np.linalg.norm(a - c, axis=1), 90)) if len(a) > 1 else 1.0
    s = s if s > 1e-12 else 1.0
    an = (a - c) / s
    an -= np.sum(an * directions, axis=1, keepdims=True) * directions      # closest to the new origin
    return an, c, s


def denormalise(R: np.ndarray, t: np.ndarray, centre: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    return R, scale * np.asarray(t) - R @ centre


def minimal_poses(anchors: np.ndarray, directions: np.ndarray, bearings: np.ndarray
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """All (R, t) (cam_from_world) that put 6 bearings on their 6 lines (PoseLib
    gen_relpose_6pt; up to 64 solutions, usually 2-4 real ones)."""
    sols = poselib.gen_relpose_6pt(np.ascontiguousarray(anchors - SHIFT * directions),
                                   np.ascontiguousarray(directions), np.zeros((len(anchors), 3)),
                                   np.ascontiguousarray(bearings))
    return [(np.asarray(p.R), np.asarray(p.t).ravel()) for p in sols]


def _dot(a, b):
    return np.einsum("ij,ij->i", a, b)


def residuals(R: np.ndarray, t: np.ndarray, anchors: np.ndarray, directions: np.ndarray,
              bearings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signed residual (sine of the ray-plane angle), in front (bool)) per correspondence."""
    ac = anchors @ R.T + t
    vc = directions @ R.T
    n = np.cross(ac, vc)
    r = _dot(n, bearings) / np.maximum(np.linalg.norm(n, axis=1), 1e-15)
    bv = _dot(bearings, vc)
    depth = (_dot(bearings, ac) - bv * _dot(vc, ac)) / np.maximum(1.0 - bv * bv, 1e-12)
    return r, depth > 0


def residuals_and_jacobian(R: np.ndarray, t: np.ndarray, anchors: np.ndarray, directions: np.ndarray,
                           bearings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (N,) and their Jacobian (N, 6) for the update R <- exp([w]x) R,
    t <- t + dt (columns w, dt). With A = R a + t, V = R v, n = A x V and g = dr/dn =
    (b - r n/|n|) / |n|: dr/dw = (g x V) x Ra - (g x A) x V, dr/dt = -(g x V)."""
    ra = anchors @ R.T
    A = ra + t
    V = directions @ R.T
    n = np.cross(A, V)
    nn = np.maximum(np.linalg.norm(n, axis=1), 1e-15)
    r = _dot(n, bearings) / nn
    g = (bearings - (r / nn)[:, None] * n) / nn[:, None]
    gv = np.cross(g, V)
    J = np.empty((len(r), 6))
    J[:, :3] = np.cross(gv, ra) - np.cross(np.cross(g, A), V)
    J[:, 3:] = -gv
    return r, J


def _robust(r: np.ndarray, loss: str, scale: float) -> tuple[float, np.ndarray]:
    """(cost, IRLS weights) of residuals under `loss` ('linear', 'huber', 'cauchy') at `scale`."""
    z = (r / scale) ** 2
    if loss == "cauchy":
        return float(0.5 * scale ** 2 * np.log1p(z).sum()), 1.0 / (1.0 + z)
    if loss == "huber":
        a = np.abs(r)
        big = a > scale
        cost = np.where(big, scale * (a - 0.5 * scale), 0.5 * r * r).sum()
        return float(cost), np.where(big, scale / np.maximum(a, 1e-300), 1.0)
    return float(0.5 * (r * r).sum()), np.ones_like(r)


def refine(R: np.ndarray, t: np.ndarray, anchors: np.ndarray, directions: np.ndarray, bearings: np.ndarray,
           loss: str = "linear", scale: float = 1.0, max_iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt (iteratively reweighted for a robust `loss` at `scale`) of
    the point-to-line residuals over the pose, relinearised at every step."""
    if len(anchors) < 6:
        return R, t
    lam = 1e-4
    r, J = residuals_and_jacobian(R, t, anchors, directions, bearings)
    cost, w = _robust(r, loss, scale)
    for _ in range(max_iterations):
        Jw = J * w[:, None]
        H = J.T @ Jw
        g = Jw.T @ r
        try:
            dx = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), g)
        except np.linalg.LinAlgError:
            break
        R2 = Rotation.from_rotvec(dx[:3]).as_matrix() @ R
        t2 = t + dx[3:]
        r2, J2 = residuals_and_jacobian(R2, t2, anchors, directions, bearings)
        cost2, w2 = _robust(r2, loss, scale)
        if cost2 < cost:
            R, t, r, J, cost, w = R2, t2, r2, J2, cost2, w2
            lam = max(lam / 10, 1e-10)
            if np.linalg.norm(dx) < 1e-12:
                break
        else:
            lam *= 10
            if lam > 1e6:
                break
    return R, t
