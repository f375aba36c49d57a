"""The 6-point solver and our LO-RANSAC on synthetic 2D point to 3D line matches."""
import time

import numpy as np
from scipy.spatial.transform import Rotation

from vloc.lines.cloud import lift_points
from vloc.lines.ransac import LineRansacConfig, ransac_lines
from vloc.lines.solver import minimal_poses, normalise, refine, residuals, residuals_and_jacobian


def scene(n: int, seed: int):
    """A camera (cam_from_world R, t) and n points 2-8 m in front of it, lifted to lines."""
    rng = np.random.default_rng(seed)
    R = Rotation.random(random_state=seed).as_matrix()
    centre = rng.normal(size=3)
    t = -R @ centre
    pc = np.c_[rng.uniform(-3, 3, (n, 2)), rng.uniform(2, 8, n)]
    xyz = (pc - t) @ R                        # world = R^T (x_cam - t)
    anchors, dirs, truth = lift_points(xyz, "random", seed)
    pc = xyz[truth[:, 0]] @ R.T + t
    return R, t, anchors, dirs, pc / np.linalg.norm(pc, axis=1, keepdims=True)


def rot_err(Ra, Rb):
    return np.degrees(np.arccos(np.clip((np.trace(Ra @ Rb.T) - 1) / 2, -1, 1)))


def test_six_point_solver_recovers_the_exact_pose():
    for seed in range(5):
        R, t, a, v, b = scene(6, seed)
        an, c, s = normalise(a, v)
        sols = minimal_poses(an, v, b)
        assert 1 <= len(sols) <= 64
        errs = [(rot_err(R2, R), np.linalg.norm(s * t2 - R2 @ c - t)) for R2, t2 in sols]
        best = min(errs)
        assert best[0] < 1e-5 and best[1] < 1e-6        # degrees, metres
        R2, t2 = sols[int(np.argmin([e[0] for e in errs]))]
        r, front = residuals(R2, t2, an, v, b)
        assert np.abs(r).max() < 1e-9 and front.all()


def test_jacobian_matches_finite_differences():
    R, t, a, v, b = scene(20, 11)
    r, J = residuals_and_jacobian(R, t + 0.01, a, v, b)
    eps = 1e-7
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        r2, _ = residuals_and_jacobian(Rotation.from_rotvec(d[:3]).as_matrix() @ R, t + 0.01 + d[3:], a, v, b)
        assert np.allclose((r2 - r) / eps, J[:, k], atol=1e-5)


def test_refinement_converges_from_a_perturbed_pose():
    R, t, a, v, b = scene(200, 3)
    R0 = Rotation.from_rotvec([0.01, -0.02, 0.015]).as_matrix() @ R
    R1, t1 = refine(R0, t + [0.05, -0.03, 0.02], a, v, b)
    assert rot_err(R1, R) < 1e-6 and np.linalg.norm(t1 - t) < 1e-6


def test_ransac_with_half_outliers():
    n, f = 400, 500.0
    R, t, a, v, b = scene(n, 7)
    rng = np.random.default_rng(7)
    uv = b[:, :2] / b[:, 2:] * f + rng.normal(0, 0.5, (n, 2))         # 0.5 px noise
    outlier = rng.random(n) < 0.5
    uv[outlier] = rng.uniform(-320, 320, (outlier.sum(), 2))
    bearings = np.c_[uv / f, np.ones(n)]
    bearings /= np.linalg.norm(bearings, axis=1, keepdims=True)
    t0 = time.perf_counter()
    res = ransac_lines(bearings, a, v, 2.0 / f, LineRansacConfig(max_seconds=2.0, seed=0))
    seconds = time.perf_counter() - t0
    assert res.success and res.reason is None
    assert rot_err(res.R, R) < 0.1
    assert np.linalg.norm(-res.R.T @ res.t - (-R.T @ t)) < 0.01       # camera centre within 1 cm
    true_inl = ~outlier
    found = res.inliers
    assert (found & true_inl).sum() >= 0.95 * true_inl.sum()
    # an outlier falls within 2 px of its (random) line's image by chance: a few percent at most
    assert (found & outlier).sum() <= 0.06 * outlier.sum()
    assert res.iterations >= 50 and seconds < 3.0


def test_ransac_reports_why_it_failed():
    R, t, a, v, b = scene(5, 1)
    res = ransac_lines(b, a, v, 0.004)
    assert not res.success and "too few 2D-line matches (5, need >= 6)" in res.reason
    rng = np.random.default_rng(2)
    R, t, a, v, b = scene(60, 2)
    junk = rng.normal(size=(60, 3))
    junk[:, 2] = np.abs(junk[:, 2]) + 1
    junk /= np.linalg.norm(junk, axis=1, keepdims=True)
    res = ransac_lines(junk, a, v, 0.002, LineRansacConfig(max_seconds=0.2, min_iterations=20))
    assert not res.success and res.reason.startswith("too few inliers") and res.inliers.sum() < 25
