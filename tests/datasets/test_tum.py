"""TUM RGB-D importer on the real freiburg3 long_office_household excerpt."""
import numpy as np
import pytest

from vloc.datasets.importers import tum
from vloc.errors import DataError

from .epipolar import inverted, median_depth_disagreement, median_epipolar_error, read_depth

SEQ = "tum_fr3_long_office_household"
OTHERS = ["strecha/fountain-P11", "middlebury_temple/templeRing", "nerf_fox", "7scenes_stairs_sample",
          "virtual_gallery_tutorial", "aachen_day_night_sample", "maupertuis_colmap_sample"]


@pytest.fixture(scope="module")
def scene(shared_data):
    return tum.load(shared_data / SEQ)


def test_detect(shared_data):
    assert tum.detect(shared_data / SEQ) and tum.detect(shared_data / SEQ / "rgb")
    for other in OTHERS:
        assert not tum.detect(shared_data / other), other


def test_counts(scene):
    assert len(scene) == 32                              # of 2585 lines in rgb.txt
    assert len(scene.posed_frames) == 30                 # the first two precede the ground truth
    assert {f.name for f in scene if not f.has_pose} == {"rgb/1341847980.722988.png",
                                                         "rgb/1341847980.754743.png"}
    assert sum(f.has_depth for f in scene) == 16
    f = scene.frame("rgb/1341847980.822978.png")
    assert f.depth_path.name == "1341847980.822989.png" and f.depth_scale == pytest.approx(1 / 5000)
    assert f.timestamp == pytest.approx(1341847980.822978) and f.depth_registered
    (cam,) = scene.cameras                               # freiburg3 from the folder name, +0.5
    np.testing.assert_allclose(cam.params, (535.4, 539.2, 320.6, 248.1))
    assert not scene.notes[1:] and "no ground truth" in scene.notes[0]


def test_alternate_seconds_split(scene):
    mapping, query = scene.official_splits["alternate-seconds"]
    assert len(query) == 8 and len(mapping) == 22        # 8 even-second + 14 of the 30 Hz block
    secs = sorted(int(float(n[4:-4])) for n in query)
    assert secs == list(range(1341847981, 1341847996, 2))
    assert not set(mapping) & set(query)
    (fold,) = scene.split("official")
    assert len(fold.query) == 8


def test_camera_model_from_folder_name():
    assert tum._freiburg(tum.Path("rgbd_dataset_freiburg1_xyz")) == 1
    assert tum._freiburg(tum.Path("tum_fr2_desk")) == 2
    assert tum._freiburg(tum.Path("office")) is None
    cam1 = tum.tum_camera(1)
    assert cam1.model == "FULL_OPENCV" and cam1.params[8] == pytest.approx(1.1633)
    assert cam1.cx == pytest.approx(319.1)


def test_pose_convention_epipolar(scene):
    # consecutive ~1 Hz frames, 0.14-0.4 m apart
    pairs = [("rgb/1341847981.726650.png", "rgb/1341847982.730674.png"),
             ("rgb/1341847985.746954.png", "rgb/1341847986.762616.png"),
             ("rgb/1341847989.802890.png", "rgb/1341847990.810771.png")]
    for a, b in pairs:
        fa, fb = scene.frame(a), scene.frame(b)
        right = median_epipolar_error(fa, fb)
        wrong = median_epipolar_error(inverted(fa), inverted(fb))
        assert right < 1.5, (a, b, right)                   # measured 0.49-0.61 px
        assert wrong > max(4.0, 5 * right), (a, b, wrong)   # measured 5.6-25 px


def test_depth_scale_and_consistency(scene):
    fa = scene.frame("rgb/1341847980.786856.png")
    fb = scene.frame("rgb/1341847981.222978.png")        # 0.44 s later, both with depth
    d = read_depth(fa)
    assert 0.5 < np.median(d[d > 0]) < 5.0               # metres (measured 2.4 m)
    assert median_depth_disagreement(fa, fb) < 0.05      # measured 8.6 mm


GT_HEADER = "# timestamp tx ty tz qx qy qz qw\n"


def _write_seq(tmp_path, gt_lines):
    from vloc._libs import cv2
    root = tmp_path / "rgbd_dataset_freiburg2_test"
    (root / "rgb").mkdir(parents=True)
    cv2.imwrite(str(root / "rgb" / "10.000000.png"), np.zeros((480, 640, 3), np.uint8))
    (root / "rgb.txt").write_text("# colour\n10.000000 rgb/10.000000.png\n11.0 rgb/11.000000.png\n")
    (root / "groundtruth.txt").write_text(GT_HEADER + "\n".join(gt_lines) + "\n")
    return root


def test_tmp_sequence(tmp_path):
    root = _write_seq(tmp_path, ["9.99 1 2 3 0 0 0 1", "10.05 5 5 5 0 0 0 1"])
    scene = tum.load(root)
    assert len(scene) == 1 and not scene.official_splits   # 11.0 is listed but missing
    f = scene.frames[0]
    np.testing.assert_allclose(f.cam_from_world.center, [1, 2, 3])   # camera-to-world in the file
    assert f.camera.model == "FULL_OPENCV" and f.depth_path is None  # freiburg2 from the name
    assert scene.notes == []


@pytest.mark.parametrize("line,match", [
    ("10.0 1 2 3 0 0 0", "expected 8 values"),
    ("10.0 1 2 3 0 0 zero 1", "bad number"),
    ("10.0 1 2 3 0 0 0 0", "zero quaternion"),
])
def test_malformed_groundtruth(tmp_path, line, match):
    root = _write_seq(tmp_path, ["9.99 1 2 3 0 0 0 1", line])
    with pytest.raises(DataError, match=match) as e:
        tum.load(root)
    assert "groundtruth.txt" in str(e.value)
