import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vloc.errors import VlocError
from vloc.evaluation import (QueryResult, default_preset, query_result, recall, summarize,
                             thresholds_for, true_median)
from vloc.geometry import Pose, pose_errors, quat_to_rotmat, rotation_error_deg
from vloc.localizers import Estimate


def rot_z(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def axis_angle(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = math.radians(deg)
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K


def res(name, t=None, r=None, seconds=1.0, **kw):
    if t is None:
        return QueryResult(name, False, math.inf, math.inf, seconds, reason="no matches", **kw)
    return QueryResult(name, True, t, r, seconds, **kw)


# --------------------------------------------------------------------------- hand-made poses
def test_rotation_90_about_z():
    gt = Pose(np.eye(3), [1, 2, 3])
    est = Pose(rot_z(90), [1, 2, 3])
    assert rotation_error_deg(est.R, gt.R) == pytest.approx(90.0, abs=1e-9)


def test_identical_poses_zero_no_nan():
    R = axis_angle([0.3, -1, 2], 37.0)
    gt = Pose(R, [0.5, -1, 4])
    t_err, r_err = pose_errors(Pose(R.copy(), [0.5, -1, 4]), gt)
    assert t_err == 0.0 and r_err == 0.0
    # R @ R.T slightly off the identity (trace a hair above 3): still 0, not NaN
    eps = np.eye(3) * (1 + 1e-12)
    assert rotation_error_deg(R @ eps, R) == pytest.approx(0.0, abs=1e-4)
    assert not math.isnan(rotation_error_deg(R @ eps, R))


def test_rotation_180():
    assert rotation_error_deg(rot_z(180), np.eye(3)) == pytest.approx(180.0, abs=1e-5)  # arccos near -1
    assert rotation_error_deg(axis_angle([1, 1, 0], 180), np.eye(3)) == pytest.approx(180.0, abs=1e-5)  # arccos near -1


def test_translation_error_is_centre_distance_not_t_difference():
    # Same t vector, different rotations: |t1 - t2| = 0 but the centres differ.
    t = np.array([0.0, 0.0, 2.0])
    gt = Pose(np.eye(3), t)                       # centre (0, 0, -2)
    est = Pose(axis_angle([0, 1, 0], 90), t)      # centre (2, 0, 0)
    assert np.linalg.norm(est.t - gt.t) == 0.0
    t_err, _ = pose_errors(est, gt)
    assert t_err == pytest.approx(np.linalg.norm(est.center - gt.center))
    assert t_err == pytest.approx(2 * math.sqrt(2))
    # and the other way round: same centre, different t
    gt2 = Pose(np.eye(3), [0, 0, 0])
    est3 = Pose(rot_z(90), [0, 0, 0])
    assert pose_errors(est3, gt2)[0] == pytest.approx(0.0, abs=1e-12)


def test_query_result_success_and_failure():
    gt = Pose(np.eye(3), [0, 0, 1])
    est = Estimate(Pose(rot_z(10), [0, 0, 1]), inliers=50, correspondences=80,
                   timings={"extract": 0.1, "pnp": 0.02})
    r = query_result("a.jpg", est, gt, 0.5, fold="fold1", peak_memory_mb=120.0)
    assert r.success and r.rotation_error == pytest.approx(10.0)
    assert r.translation_error == pytest.approx(0.0, abs=1e-12)
    assert (r.inliers, r.correspondences, r.fold, r.peak_memory_mb) == (50, 80, "fold1", 120.0)
    assert r.cam_from_world is est.cam_from_world
    assert r.timings == {"extract": 0.1, "pnp": 0.02}

    f = query_result("b.jpg", Estimate.failed("too few inliers", inliers=3), gt, 0.2)
    assert not f.success and math.isinf(f.translation_error) and math.isinf(f.rotation_error)
    assert f.reason == "too few inliers" and f.cam_from_world is None


def test_query_result_without_gt_is_value_error():
    with pytest.raises(ValueError, match="ground-truth"):
        query_result("a.jpg", Estimate(Pose.identity()), None, 0.1)


# --------------------------------------------------------------------------- medians, recall
def test_true_median():
    assert true_median([1, 2, math.inf]) == 2
    assert math.isinf(true_median([1, math.inf]))
    assert true_median([1, 3]) == 2
    assert true_median([4, 1, 3, 2]) == 2.5
    assert math.isnan(true_median([]))


def test_summarize_counts_failures():
    results = [res("a", 1.0, 1.0), res("b", 2.0, 2.0), res("c")]
    s = summarize(results, [(1.5, 5.0, "x"), (10.0, 10.0, "y")])
    assert s["queries"] == 3 and s["failures"] == 1
    assert s["median_translation_error"] == 2.0 and s["median_rotation_error"] == 2.0
    assert s["recall"] == {"x": pytest.approx(1 / 3), "y": pytest.approx(2 / 3)}

    s2 = summarize([res("a", 1.0, 1.0), res("b")], [(10.0, 10.0)])
    assert math.isinf(s2["median_translation_error"]) and math.isinf(s2["median_rotation_error"])
    assert s2["recall"] == {"10/10°": 0.5}


def test_recall_needs_both_thresholds():
    results = [res("a", 0.01, 6.0), res("b", 0.06, 1.0), res("c", 0.05, 5.0)]
    assert recall(results, 0.05, 5.0) == pytest.approx(1 / 3)   # inclusive bounds
    assert recall([], 1, 1) == 0.0


def test_summarize_timings_seconds_memory():
    results = [res("a", 0.1, 1, seconds=1.0, timings={"x": 0.1, "y": 1.0}, peak_memory_mb=10.0),
               res("b", 0.1, 1, seconds=2.0, timings={"x": 0.3}, peak_memory_mb=30.0),
               res("c", seconds=6.0, timings={"x": 0.2})]
    s = summarize(results, thresholds_for("indoor"))
    assert s["mean_seconds"] == pytest.approx(3.0) and s["median_seconds"] == pytest.approx(2.0)
    assert s["median_timings"] == {"x": pytest.approx(0.2), "y": pytest.approx(1.0)}
    assert s["peak_memory_mb"] == 30.0
    assert list(s["recall"]) == ["1cm/1°", "2cm/2°", "5cm/5°"]
    assert summarize(results[:1], [(1, 1)])["peak_memory_mb"] == 10.0
    assert summarize([res("a", 1, 1)], [(1, 1)])["peak_memory_mb"] is None


def test_summarize_empty():
    s = summarize([], thresholds_for("indoor"))
    assert s["queries"] == 0 and s["median_translation_error"] is None
    assert all(v == 0.0 for v in s["recall"].values())


def test_threshold_validation():
    with pytest.raises(ValueError):
        summarize([], [(0.0, 1.0)])
    with pytest.raises(ValueError):
        summarize([], [(0.1, 1.0, "a"), (0.2, 1.0, "a")])


# --------------------------------------------------------------------------- presets
def test_presets():
    indoor = thresholds_for("indoor")
    assert [(t.t, t.r, t.label) for t in indoor] == [
        (0.01, 1.0, "1cm/1°"), (0.02, 2.0, "2cm/2°"), (0.05, 5.0, "5cm/5°")]
    outdoor = thresholds_for("outdoor")
    assert {(t.t, t.r) for t in outdoor} >= {(0.25, 2.0), (0.5, 5.0), (5.0, 10.0), (0.05, 5.0)}
    assert [t.label for t in outdoor] == ["5cm/5°", "25cm/2°", "50cm/5°", "5m/10°"]
    rel = thresholds_for("relative", scene_scale=4.0)
    assert ("1%/5°" in [t.label for t in rel])
    one = next(t for t in rel if t.label == "1%/5°")
    assert one.t == pytest.approx(0.04) and one.r == 5.0
    with pytest.raises(VlocError):
        thresholds_for("relative")
    with pytest.raises(VlocError, match="unknown"):
        thresholds_for("nope")
    custom = thresholds_for([(0.1, 2.0)])
    assert custom[0].t == 0.1 and custom[0].label


def test_default_preset():
    def scene(metric, scale):
        return SimpleNamespace(metric=metric, scale=lambda: scale)
    assert default_preset(scene(False, 100.0)) == "relative"
    assert default_preset(scene(True, 2.0)) == "indoor"
    assert default_preset(scene(True, 50.0)) == "outdoor"


# --------------------------------------------------------------------------- properties
unit_quats = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1)


@settings(max_examples=60, deadline=None)
@given(unit_quats, unit_quats)
def test_rotation_error_symmetric_and_bounded(q1, q2):
    R1, R2 = quat_to_rotmat(q1), quat_to_rotmat(q2)
    e12, e21 = rotation_error_deg(R1, R2), rotation_error_deg(R2, R1)
    assert 0.0 <= e12 <= 180.0 and not math.isnan(e12)
    assert e12 == pytest.approx(e21, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(unit_quats, st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=3).filter(
    lambda a: np.linalg.norm(a) > 0.1), st.floats(0.05, 30.0),
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=3))
def test_small_known_rotation_gives_its_angle(q, axis, angle, t):
    gt = Pose(quat_to_rotmat(q), t)
    delta = Pose(axis_angle(axis, angle), np.zeros(3))
    est = delta * gt                      # rotate the camera by `angle` about its own axis
    t_err, r_err = pose_errors(est, gt)
    assert r_err == pytest.approx(angle, abs=1e-5)
    assert t_err == pytest.approx(np.linalg.norm(est.center - gt.center), abs=1e-9)
    est2 = gt * delta                     # or about the world axes
    assert pose_errors(est2, gt)[1] == pytest.approx(angle, abs=1e-5)
