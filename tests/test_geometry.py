import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vloc.errors import DataError
from vloc.geometry import Camera, Pose, pose_errors, quat_to_rotmat, rotation_error_deg, rotmat_to_quat

quats = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1)
vecs = st.lists(st.floats(-100, 100), min_size=3, max_size=3)


@given(quats)
@settings(max_examples=200, deadline=None)
def test_quaternion_round_trip(q):
    q = np.asarray(q) / np.linalg.norm(q)
    q = q if q[0] >= 0 else -q
    R = quat_to_rotmat(q)
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    q2 = rotmat_to_quat(R)
    assert np.allclose(q2, q, atol=1e-9) or (abs(q[0]) < 1e-9 and np.allclose(q2, -q, atol=1e-9))


@given(quats, vecs)
@settings(max_examples=100, deadline=None)
def test_pose_inverse_and_centre(q, t):
    P = Pose.from_qt(q, t)
    I = P * P.inverse()
    assert np.allclose(I.R, np.eye(3), atol=1e-10) and np.allclose(I.t, 0, atol=1e-8)
    # the centre maps to the camera origin
    assert np.allclose(P.transform(P.center[None])[0], 0, atol=1e-8)
    assert np.allclose(P.matrix()[:3, :3], P.R)


def test_rotation_error_small_angles_not_lost():
    # rotations read from files are orthonormal to ~1e-7 only; Pose projects them onto SO(3)
    rng = np.random.default_rng(0)
    R = quat_to_rotmat(rng.normal(size=4)) + 1e-7 * rng.normal(size=(3, 3))
    P = Pose(R, [0, 0, 0])
    a = np.radians(0.01)
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    assert rotation_error_deg(Rz @ P.R, P.R) == pytest.approx(0.01, rel=1e-3)


def test_pose_errors_use_camera_centres():
    gt = Pose.from_qt([1, 0, 0, 0], [0, 0, 0])
    est = Pose.from_qt([np.cos(np.pi / 4), 0, np.sin(np.pi / 4), 0], [0, 0, 0])  # 90 deg about y, same centre
    t, r = pose_errors(est, gt)
    assert t == pytest.approx(0.0, abs=1e-12)
    assert r == pytest.approx(90.0)


def test_pose_rejects_non_rotations_and_nan():
    with pytest.raises(DataError, match="not a rotation"):
        Pose(np.diag([1.0, 1.0, -1.0]), [0, 0, 0])
    with pytest.raises(DataError, match="NaN"):
        Pose(np.eye(3), [0, np.nan, 0])


def test_camera_validation_and_scaling():
    cam = Camera.from_string("PINHOLE 640 480 500 510 320 240")
    assert np.allclose(cam.K, [[500, 0, 320], [0, 510, 240], [0, 0, 1]])
    half = cam.scaled(0.5)
    assert half.width == 320 and half.params == (250, 255, 160, 120)
    for bad in ["PINHOLE 640 480 0 500 320 240", "PINHOLE 640 480 nan 500 320 240",
                "PINHOLE 640 480 500 320 240", "WEIRD 640 480 500", "PINHOLE 0 480 500 500 320 240"]:
        with pytest.raises(DataError):
            Camera.from_string(bad)


def test_camera_projection_round_trip_with_distortion():
    rng = np.random.default_rng(1)
    pts = np.c_[rng.uniform(-0.5, 0.5, (50, 2)), np.ones(50)] * rng.uniform(1, 5, (50, 1))
    for text in ["PINHOLE 640 480 500 510 320 240", "OPENCV 640 480 500 510 320 240 0.1 -0.05 0.001 0.002",
                 "SIMPLE_RADIAL 640 480 500 320 240 0.05"]:
        cam = Camera.from_string(text)
        uv = cam.project(pts)
        xy = cam.unproject(uv)
        assert np.allclose(xy, pts[:, :2] / pts[:, 2:], atol=1e-8), text


def test_interpolated_pose_of_two_frames_is_halfway():
    from vloc.geometry import interpolate_poses
    a = Pose.from_qt([1, 0, 0, 0], [0, 0, 0])
    angle = np.radians(40)
    Rb = quat_to_rotmat([np.cos(angle / 2), 0, np.sin(angle / 2), 0])          # 40 deg about y
    b = Pose(Rb, -Rb @ np.array([2.0, 0.0, 1.0]))                                  # centre (2, 0, 1)
    mid = interpolate_poses([a, b])
    assert np.allclose(mid.center, [1.0, 0.0, 0.5])
    assert rotation_error_deg(mid.R, a.R) == pytest.approx(20.0)
    assert rotation_error_deg(mid.R, b.R) == pytest.approx(20.0)
    # weights pull towards the heavier frame; sign flips of quaternions do not matter
    w = interpolate_poses([a, b, b], [3.0, 0.5, 0.5])
    assert np.allclose(w.center, [0.5, 0.0, 0.25])
    # chordal (quaternion) mean: the angle from a is atan2(wb sin 40, wa + wb cos 40), not 10 deg
    expected = np.degrees(np.arctan2(0.25 * np.sin(angle), 0.75 + 0.25 * np.cos(angle)))
    assert rotation_error_deg(w.R, a.R) == pytest.approx(expected, abs=1e-6)
