"""The feature-metric solver on a smooth random feature field with exact references:
its gradient against finite differences, convergence from coarse poses, and the
failures it reports."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from vloc.geometry import Camera, Pose
from vloc.refinement import RefineConfig, refine_pose
from vloc.refinement.pyramid import FeaturePyramid
from vloc.refinement.solver import _Level

CAM = Camera.from_string("PINHOLE 640 480 500 500 320 240")


@pytest.fixture(scope="module")
def field():
    """A 3-level pyramid of smoothed Gaussian noise (strides 32, 8, 1), 500 points 3-6 m
    in front of the identity camera, and their exact reference features."""
    rng = np.random.default_rng(0)
    levels = []
    for stride, sigma, dim in ((32, 1.0, 32), (8, 1.5, 64), (1, 3.0, 128)):
        f = gaussian_filter(rng.normal(size=(-(-480 // stride), -(-640 // stride), dim)), (sigma, sigma, 0))
        levels.append((f / np.linalg.norm(f, axis=2, keepdims=True)).astype(np.float32))
    pyr = FeaturePyramid(levels, (32, 8, 1), (1.0, 1.0))
    uv = rng.uniform([40, 40], [600, 440], (500, 2))
    depth = rng.uniform(3, 6, 500)
    xyz = np.c_[(uv - [320, 240]) / 500 * depth[:, None], depth]
    refs = [pyr.sample(level, pyr.to_level(level, CAM.project(xyz)))[0] for level in range(3)]
    return pyr, xyz, refs


def _perturbed(rng, metres, degrees):
    axis = rng.normal(size=3)
    q = Rotation.from_rotvec(np.radians(degrees) * axis / np.linalg.norm(axis)).as_quat()
    t = rng.normal(size=3)
    return Pose.from_qt([q[3], q[0], q[1], q[2]], metres * t / np.linalg.norm(t))


def test_pixel_centres_sample_the_grid_exactly(field):
    pyr, _, _ = field
    xy = np.array([[10.5, 20.5], [300.5, 7.5]])
    f, valid = pyr.sample(2, pyr.to_level(2, xy))
    assert valid.all() and np.allclose(f, pyr.levels[2][[20, 7], [10, 300]])


@pytest.mark.parametrize("level", [1, 2])
def test_gauss_newton_gradient_matches_finite_differences(field, level):
    """g of the reweighted system is half the gradient of the robust cost (rho' weights)."""
    pyr, xyz, refs = field
    L = _Level(pyr, level, CAM, xyz, refs[level], np.linspace(0.5, 1.0, len(xyz)), RefineConfig())
    pose = _perturbed(np.random.default_rng(1), 0.01, 0.3)
    _, _, _, _, g = L.evaluate(pose.R, pose.t, system=True)
    numeric = np.zeros(6)
    for k in range(6):
        for sign in (1, -1):
            d = np.zeros(6)
            d[k] = sign * 1e-6
            R = Rotation.from_rotvec(d[3:]).as_matrix()
            numeric[k] += sign * L.evaluate(R @ pose.R, R @ pose.t + d[:3])[0] / 2e-6
    assert np.allclose(2 * g, numeric, rtol=2e-3, atol=1e-3 * np.abs(numeric).max())


@pytest.mark.parametrize("metres,degrees", [(0.05, 1.0), (0.2, 3.0), (0.4, 6.0)])
def test_converges_from_coarse_poses(field, metres, degrees):
    pyr, xyz, refs = field
    start = _perturbed(np.random.default_rng(int(metres * 100)), metres, degrees)
    res = refine_pose(pyr, CAM, start, xyz, refs, np.ones(len(xyz)))
    assert res.reason is None and res.inliers == 500
    assert np.linalg.norm(res.cam_from_world.center) < 1e-6
    assert np.abs(res.cam_from_world.R - np.eye(3)).max() < 1e-6
    assert [h["level"] for h in res.levels] == [0, 1, 2]
    assert all(h["cost_after"] <= h["cost_before"] for h in res.levels)


def test_failures_say_why(field):
    pyr, xyz, refs = field
    away = Pose.from_qt([0, 0, 1, 0], [0, 0, 0])                       # looking backwards
    res = refine_pose(pyr, CAM, away, xyz, refs, np.ones(len(xyz)))
    assert res.cam_from_world is None and "too few map points in view" in res.reason
    rng = np.random.default_rng(5)
    noise = [r[rng.permutation(len(r))] for r in refs]                  # references of other points
    res = refine_pose(pyr, CAM, Pose.identity(), xyz, noise, np.ones(len(xyz)))
    assert res.cam_from_world is None and "did not converge" in res.reason


@pytest.mark.parametrize("yaw,pitch,metres", [(15, 10, 0.2), (-10, 14, 0.3)])
def test_turn_search_widens_the_basin(field, yaw, pitch, metres):
    """Starts turned 18° away: the local refinement alone fails (and says so); with
    the coarse-level search of turns about the start's centre it ends exactly."""
    pyr, xyz, refs = field
    R = Rotation.from_euler("yx", [yaw, pitch], degrees=True).as_matrix()
    start = Pose(R, np.array([metres, -metres / 2, 0.0]))
    local = refine_pose(pyr, CAM, start, xyz, refs, np.ones(len(xyz)), RefineConfig(search_degrees=0))
    assert local.cam_from_world is None and "did not converge" in local.reason
    res = refine_pose(pyr, CAM, start, xyz, refs, np.ones(len(xyz)), RefineConfig(search_degrees=20))
    assert res.reason is None and res.inliers == 500
    assert np.linalg.norm(res.cam_from_world.center) < 1e-6
    assert np.abs(res.cam_from_world.R - np.eye(3)).max() < 1e-6
