"""Method `featuremetric` on templeRing (real photographs, exact poses): from the poses
of the retrieved mapping images (7.5 cm / 7.7° away) to millimetres, and `refine`
from any coarse pose."""
import numpy as np
import pytest

import vloc
from vloc.errors import DataError
from vloc.geometry import pose_errors
from vloc.localizers import Query


@pytest.fixture(scope="module")
def fm_map(temple, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("fm") / "map"
    manifest = vloc.build_map(temple, out, method="featuremetric", split="odd-even", progress=False)
    assert manifest["method"] == "featuremetric" and manifest["stats"]["points"] > 300
    return out


def test_localize_refines_the_retrieved_pose(fm_map, temple):
    loc = vloc.load_localizer(fm_map)
    for q in temple.split("odd-even")[0].query[:4]:
        est = loc.localize(Query(q.name, image_path=q.image_path, camera=q.camera))
        assert est.success, est.reason
        start = loc.poses[est.details["start_image"]]
        t0, r0 = pose_errors(start, q.cam_from_world)
        t1, r1 = pose_errors(est.cam_from_world, q.cam_from_world)
        assert t0 > 0.05 and r0 > 5                   # the retrieved pose: 7.5 cm, 7.7 degrees
        assert t1 < 0.005 and r1 < 0.5, (q.name, t1, r1)
        assert est.inliers > 150 and {"dense_features", "refinement", "retrieval"} <= set(est.timings)
        assert est.details["starts_tried"] == 1             # the first start settles it (>= 50 % agree)


def test_every_start_tried_unless_one_settles(fm_map, temple):
    """settle_ratio = 1 tries all three retrieved starts: the same pose to a millimetre."""
    from dataclasses import replace
    loc = vloc.load_localizer(fm_map)
    q = temple.split("odd-even")[0].query[2]
    query = Query(q.name, image_path=q.image_path, camera=q.camera)
    first = loc.localize(query)
    loc.config = replace(loc.config, settle_ratio=1.0)
    every = loc.localize(query)
    assert first.details["starts_tried"] == 1 and every.details["starts_tried"] == 3
    assert every.success and pose_errors(every.cam_from_world, first.cam_from_world)[0] < 0.001


def test_refine_any_coarse_pose_and_report_failures(fm_map, temple):
    from vloc.geometry import Pose
    loc = vloc.load_localizer(fm_map)
    q = temple.split("odd-even")[0].query[5]
    query = Query(q.name, image_path=q.image_path, camera=q.camera)
    gt = q.cam_from_world
    nudged = Pose(gt.R, gt.t + [0.03, -0.02, 0.02])                   # 4 cm off
    est = loc.refine(query, nudged)
    assert est.success and pose_errors(est.cam_from_world, gt)[0] < 0.005
    behind = Pose(np.diag([-1.0, 1.0, -1.0]) @ gt.R, gt.t)            # looking away from the temple
    est = loc.refine(query, behind)
    assert not est.success and "no mapping image looks within 90°" in est.reason
    aside = Pose(gt.R, gt.t + [1.0, 0, 0])                           # 1 m to the side: the temple out of view
    est = loc.refine(query, aside)
    assert not est.success and "too few map points in view" in est.reason
    with pytest.raises(DataError, match="needs the query's camera"):
        loc.localize(Query(q.name, image_path=q.image_path))


def test_synthetic_room_from_near_the_truth(room, tmp_path, one_torch_thread):
    """On the rendered room (exact poses and intrinsics), queries refined from 5 cm and
    3° off their true pose: 5 of the 6 end within 1 cm and 0.2° (measured: 0.7-5.5 mm),
    the sixth is reported as not converged, never as a wrong pose. (Before 01151c1 the
    coarse level's biased minimum took some 30 cm away.)"""
    from scipy.spatial.transform import Rotation
    from vloc.geometry import Pose
    fold = room.split("official")[0]
    vloc.build_map(list(fold.mapping), tmp_path / "map", method="featuremetric", progress=False)
    loc = vloc.load_localizer(tmp_path / "map")
    rng = np.random.default_rng(0)
    converged = 0
    for q in fold.query:
        gt = q.cam_from_world
        axis, shift = rng.normal(size=3), rng.normal(size=3)
        R = Rotation.from_rotvec(np.radians(3) * axis / np.linalg.norm(axis)).as_matrix()
        start = Pose(R @ gt.R, R @ gt.t + 0.05 * shift / np.linalg.norm(shift))
        est = loc.refine(Query(q.name, image_path=q.image_path, camera=q.camera), start)
        if not est.success:
            assert "did not converge" in est.reason
            continue
        t, r = pose_errors(est.cam_from_world, gt)
        assert t < 0.01 and r < 0.2, (q.name, t, r)
        converged += 1
    assert converged >= 5
