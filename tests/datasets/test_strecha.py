"""Strecha importer on the real fountain-P11 / Herz-Jesus-P8 data."""
from pathlib import Path

import numpy as np
import pytest

from vloc.datasets.importers import strecha
from vloc.errors import DataError

from .epipolar import inverted, median_epipolar_error

OTHERS = ["middlebury_temple/templeRing", "tum_fr3_long_office_household", "nerf_fox",
          "7scenes_stairs_sample", "virtual_gallery_tutorial", "aachen_day_night_sample",
          "maupertuis_colmap_sample"]


@pytest.fixture(scope="module")
def fountain(shared_data):
    return strecha.load(shared_data / "strecha" / "fountain-P11")


def test_detect(shared_data):
    root = shared_data / "strecha"
    for p in [root / "fountain-P11", root / "Herz-Jesus-P8", root / "fountain-P11" / "images", root]:
        assert strecha.detect(p), p
    for other in OTHERS:
        assert not strecha.detect(shared_data / other), other


def test_load_counts_and_camera(fountain, shared_data):
    assert len(fountain) == 11 and len(fountain.posed_frames) == 11
    assert sorted(f.name for f in fountain)[0] == "images/0000.jpg"
    assert fountain.metric and not fountain.official_splits and not fountain.notes
    (cam,) = fountain.cameras
    # K.txt: fx 2759.48, fy 2764.16, cx 1520.69, cy 1006.81 (+0.5: COLMAP convention)
    np.testing.assert_allclose(cam.params, (2759.48, 2764.16, 1521.19, 1007.31))
    assert (cam.width, cam.height) == (3072, 2048)
    herz = strecha.load(shared_data / "strecha" / "Herz-Jesus-P8" / "gt_dense_cameras")
    assert len(herz) == 8 and herz.name == "Herz-Jesus-P8"
    # the odd-even split suggested by the data README: 6 map / 5 query
    (fold,) = fountain.split("even-odd")
    assert (len(fold.mapping), len(fold.query)) == (6, 5)
    # neighbouring views are 1.6-2 m apart (metres)
    c = [f.cam_from_world.center for f in sorted(fountain, key=lambda f: f.name)]
    gaps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    assert 1.0 < gaps.min() and gaps.max() < 2.5


def test_parent_with_two_scenes_is_refused(shared_data):
    with pytest.raises(DataError, match="2 Strecha scenes"):
        strecha.load(shared_data / "strecha")


@pytest.mark.parametrize("scene,pairs", [("fountain-P11", [(0, 1), (5, 6)]), ("Herz-Jesus-P8", [(3, 4)])])
def test_pose_convention_epipolar(shared_data, scene, pairs):
    frames = sorted(strecha.load(shared_data / "strecha" / scene), key=lambda f: f.name)
    for a, b in pairs:
        right = median_epipolar_error(frames[a], frames[b])
        wrong = median_epipolar_error(inverted(frames[a]), inverted(frames[b]))
        assert right < 1.5, (scene, a, b, right)       # measured 0.05-0.11 px at 1024 px
        assert wrong > max(5.0, 20 * right), (scene, a, b, wrong)  # measured 21-125 px


def _write_camera(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


GOOD = ["2759.48 0 1520.69", "0 2764.16 1006.81", "0 0 1", "0 0 0",
        "1 0 0", "0 1 0", "0 0 1", "1 2 3", "3072 2048"]


@pytest.mark.parametrize("bad", [
    {7: "1 2"},                          # t with 2 values
    {4: "1 0 0", 5: "0 1 0", 6: "0 0 2"},  # not a rotation
    {8: "3072 two"},                     # not a number
    {3: "0.1 0 0"},                      # distortion
])
def test_malformed_camera_file(tmp_path, bad):
    lines = [bad.get(i, ln) for i, ln in enumerate(GOOD)]
    cam_file = tmp_path / "s" / "gt_dense_cameras" / "0000.jpg.camera"
    _write_camera(cam_file, lines)
    (tmp_path / "s" / "images").mkdir()
    (tmp_path / "s" / "images" / "0000.jpg").write_bytes(b"")
    assert strecha.detect(tmp_path / "s")
    with pytest.raises(DataError, match="0000.jpg.camera"):
        strecha.load(tmp_path / "s")


def test_good_tmp_camera_file(tmp_path):
    _write_camera(tmp_path / "gt_dense_cameras" / "0000.jpg.camera", GOOD)
    camera, pose = strecha.read_camera_file(tmp_path / "gt_dense_cameras" / "0000.jpg.camera")
    np.testing.assert_allclose(pose.center, [1, 2, 3])   # t in the file is the centre
    assert camera.cx == pytest.approx(1521.19)
