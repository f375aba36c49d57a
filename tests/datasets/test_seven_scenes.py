"""7-Scenes importer on the real (degraded) stairs sample."""
import numpy as np
import pytest

from vloc.datasets.importers import seven_scenes
from vloc.errors import DataError
from vloc.geometry import Camera

from .epipolar import inverted, median_depth_disagreement, median_epipolar_error, read_depth

SAMPLE = "7scenes_stairs_sample"
OTHERS = ["strecha/fountain-P11", "middlebury_temple/templeRing", "tum_fr3_long_office_household",
          "nerf_fox", "virtual_gallery_tutorial", "aachen_day_night_sample", "maupertuis_colmap_sample"]
# 7-Scenes' depth camera (the poses are its KinectFusion trajectory), +0.5 for COLMAP's convention
DEPTH_CAMERA = Camera.pinhole(585.0, 585.0, 320.5, 240.5, 640, 480)


@pytest.fixture(scope="module")
def scene(shared_data):
    return seven_scenes.load(shared_data / SAMPLE / "microsoft" / "stairs")


def test_detect(shared_data):
    root = shared_data / SAMPLE
    for p in [root, root / "microsoft", root / "microsoft" / "stairs", root / "microsoft" / "stairs" / "seq-02"]:
        assert seven_scenes.detect(p), p
    for other in OTHERS:
        assert not seven_scenes.detect(shared_data / other), other


def test_dataset_root_gives_the_same_scene(shared_data, scene):
    other = seven_scenes.load(shared_data / SAMPLE)
    assert other.root == scene.root and [f.name for f in other] == [f.name for f in scene]


def test_counts_split_and_camera(scene):
    assert scene.name == "stairs" and len(scene) == 12
    assert len(scene.posed_frames) == 12 and sum(f.has_depth for f in scene) == 12
    f = scene.frame("seq-01/frame-000000.color.jpg")
    assert f.depth_path.name == "frame-000000.depth.png"
    assert f.depth_scale == 0.001 and not f.depth_registered
    np.testing.assert_allclose(scene.cameras[0].params, (525, 525, 320.5, 240.5))
    mapping, query = scene.official_splits["official"]
    assert {n.split("/")[0] for n in mapping} == {"seq-02", "seq-03"} and len(mapping) == 6
    assert {n.split("/")[0] for n in query} == {"seq-01", "seq-04"} and len(query) == 6


def test_pose_is_reorthonormalised_camera_to_world(scene, shared_data):
    f = scene.frame("seq-01/frame-000000.color.jpg")
    M = np.loadtxt(scene.root / "seq-01" / "frame-000000.pose.txt")
    np.testing.assert_allclose(f.cam_from_world.center, M[:3, 3])           # translation = centre
    np.testing.assert_allclose(f.cam_from_world.R.T, M[:3, :3], atol=2e-3)  # det(M) ~ 0.9998
    assert abs(np.linalg.det(f.cam_from_world.R) - 1) < 1e-9


def test_depth_in_metres(scene):
    d = read_depth(scene.frame("seq-02/frame-000000.color.jpg"))
    assert 0.5 < np.median(d[d > 0]) < 5.0                         # measured ~1.6 m


@pytest.mark.parametrize("a,b", [("seq-01/frame-000000", "seq-02/frame-000000"),   # 1.48 m apart
                                 ("seq-03/frame-000000", "seq-04/frame-000000")])  # 1.25 m apart
def test_pose_convention_depth(scene, a, b):
    # the real depth maps, from frames of different sequences, must agree in 3-D
    fa, fb = scene.frame(a + ".color.jpg"), scene.frame(b + ".color.jpg")
    right = median_depth_disagreement(fa, fb, DEPTH_CAMERA)
    assert right < 0.05, right                                     # measured 1.7-2.4 cm
    wrong = median_depth_disagreement(inverted(fa), inverted(fb), DEPTH_CAMERA)
    assert wrong > 0.25, wrong                                     # measured 0.54 m, 1.15 m


def test_pose_convention_epipolar(scene):
    # The sample's colour JPEGs are tiny and blocky and neighbouring frames are only
    # 1-55 mm apart: only seq-04 0 -> 2 (5.5 cm) separates the conventions, loosely.
    fa, fb = scene.frame("seq-04/frame-000000.color.jpg"), scene.frame("seq-04/frame-000002.color.jpg")
    right = median_epipolar_error(fa, fb)
    wrong = median_epipolar_error(inverted(fa), inverted(fb))
    assert right < 6.0, right                                      # measured 3.8 px
    assert wrong > 3 * right, wrong                                # measured 17.4 px


def _write_frame(seq, i, pose_text):
    from vloc._libs import cv2
    seq.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(seq / f"frame-{i:06d}.color.png"), np.zeros((48, 64, 3), np.uint8))
    (seq / f"frame-{i:06d}.pose.txt").write_text(pose_text)


def test_tmp_scene_and_bad_pose(tmp_path):
    root = tmp_path / "chess"
    eye = "\n".join(" ".join(str(float(i == j)) for j in range(4)) for i in range(4))
    _write_frame(root / "seq-01", 0, eye)
    _write_frame(root / "seq-01", 1, eye.replace("1.0", "inf", 1))
    (root / "TrainSplit.txt").write_text("sequence1\n")
    (root / "TestSplit.txt").write_text("sequence2\n")
    scene = seven_scenes.load(root)
    assert len(scene) == 2 and len(scene.posed_frames) == 1 and "non-finite" in scene.notes[0]
    assert scene.official_splits["official"] == (["seq-01/frame-000000.color.png"], [])
    assert scene.frames[0].depth_path is None
    _write_frame(root / "seq-01", 2, "1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    with pytest.raises(DataError, match="frame-000002.pose.txt"):
        seven_scenes.load(root)
    _write_frame(root / "seq-01", 2, eye.replace("0.0", "x", 1))
    with pytest.raises(DataError, match="frame-000002.pose.txt"):
        seven_scenes.load(root)
