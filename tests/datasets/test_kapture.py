"""kapture importer: detection, counts, rig composition, pose convention on real data
(SIFT epipolar check, virtual_gallery_tutorial) and bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vloc._libs import cv2
from vloc.datasets import detect_format
from vloc.datasets.importers import kapture
from vloc.errors import DataError
from vloc.geometry import Pose

from .epipolar import inverted, median_epipolar_error

VG = "virtual_gallery_tutorial"
MAP = "mapping/training/gallery_light1_loop1/frames/rgb/"
QRY = "query/testing/gallery_light1_occlusion1/frames/rgb/camera_0/"
OTHER = ["nerf_fox", "maupertuis_colmap_sample", "maupertuis_colmap_sample/reconstruction",
         "aachen_day_night_sample", "strecha", "strecha/fountain-P11", "middlebury_temple",
         "middlebury_temple/templeRing", "tum_fr3_long_office_household", "7scenes_stairs_sample",
         "7scenes_stairs_sample/microsoft/stairs", "aachen_day_night_sample/3D-models", "."]


@pytest.fixture(scope="module")
def gallery(shared_data):
    return kapture.load(shared_data / VG)


@pytest.fixture(scope="module")
def aachen(shared_data):
    return kapture.load(shared_data / "aachen_day_night_sample" / "kapture")


# ------------------------------------------------------------------ detection
@pytest.mark.parametrize("rel", [VG, f"{VG}/mapping", f"{VG}/query", "aachen_day_night_sample/kapture",
                                 "aachen_day_night_sample/kapture/training"])
def test_detects_kapture_folders(shared_data, rel):
    assert kapture.detect(shared_data / rel)


@pytest.mark.parametrize("rel", OTHER)
def test_does_not_detect_other_datasets(shared_data, rel):
    assert not kapture.detect(shared_data / rel)


def test_registry_picks_kapture(shared_data):
    assert detect_format(shared_data / VG) == "kapture"
    assert detect_format(shared_data / "aachen_day_night_sample" / "kapture") == "kapture"


# ------------------------------------------------------------------ counts
def test_virtual_gallery_counts_and_split(gallery):
    assert gallery.format == "kapture" and gallery.name == VG
    assert len(gallery) == 16 and len(gallery.posed_frames) == 16
    mapping, query = gallery.official_splits["official"]
    assert len(mapping) == 12 and len(query) == 4
    assert all(n.startswith("mapping/") for n in mapping) and all(n.startswith("query/") for n in query)
    (fold,) = gallery.split("official")
    assert len(fold.mapping) == 12 and len(fold.query) == 4
    assert all(f.image_path.is_file() for f in gallery)
    assert {f.sensor for f in fold.mapping} == {"training_camera_0", "training_camera_1"}
    cams = {f.camera for f in fold.mapping}
    assert len(cams) == 1 and next(iter(cams)).model == "PINHOLE"
    # each query has its own focal length
    assert sorted(round(f.camera.fx, 3) for f in fold.query) == [879.83, 1259.807, 1348.513, 1760.185]
    assert fold.query[0].timestamp == 267.0
    assert gallery.notes == []


def test_single_kapture_folder(shared_data):
    s = kapture.load(shared_data / VG / "query")
    assert len(s) == 4 and not s.official_splits
    assert s.frames[0].name.startswith("testing/")


def test_aachen_kapture_db_posed_queries_unposed(aachen):
    assert aachen.name == "aachen_day_night_sample"
    assert len(aachen) == 7
    db = [f for f in aachen if f.name.startswith("training/")]
    q = [f for f in aachen if f.name.startswith("query/")]
    assert len(db) == 3 and all(f.has_pose for f in db)
    assert len(q) == 4 and not any(f.has_pose for f in q)
    mapping, query = aachen.official_splits["official"]
    assert sorted(mapping) == sorted(f.name for f in db) and sorted(query) == sorted(f.name for f in q)
    # no sensors/records_data in this sample: images come from ../images_upright
    assert all("images_upright" in str(f.image_path) and f.image_path.is_file() for f in aachen)
    assert any("images_upright" in n for n in aachen.notes)
    assert {f.camera.model for f in aachen} == {"SIMPLE_RADIAL"}
    f = aachen.frame("training/db/4446.jpg")
    assert (f.camera.width, f.camera.height) == (1200, 1600)


# ------------------------------------------------------------------ convention
def _rig_variants(frame, sensor_from_rig: Pose) -> dict[str, object]:
    rig_from_world = sensor_from_rig.inverse() * frame.cam_from_world
    return {"rig order swapped": frame.with_pose(rig_from_world * sensor_from_rig),
            "rig ignored": frame.with_pose(rig_from_world),
            "inverse": inverted(frame)}


@pytest.mark.parametrize("a, b", [
    (MAP + "camera_0/rgb_00223.jpg", MAP + "camera_0/rgb_00224.jpg"),   # same camera, next rig position
    (MAP + "camera_1/rgb_00223.jpg", MAP + "camera_0/rgb_00225.jpg"),   # across the rig
    (QRY + "rgb_00481.jpg", MAP + "camera_1/rgb_00226.jpg"),            # query vs map
])
def test_virtual_gallery_epipolar(gallery, a, b):
    """Measured (rendered data, exact poses): 0.094 / 0.118 / 0.144 px; inverted poses
    17.7 / 18.5 / 113.5 px; for the cross-rig pair, rig order swapped 4.7 px and rig
    ignored 155 px."""
    fa, fb = gallery.frame(a), gallery.frame(b)
    assert median_epipolar_error(fa, fb) < 1.5
    assert median_epipolar_error(inverted(fa), inverted(fb)) > 10.0


def test_virtual_gallery_rig_convention(gallery):
    """camera_1 is rotated in the rig: composing in the wrong order or ignoring the rig
    must break the epipolar geometry of a cross-rig pair."""
    fa = gallery.frame(MAP + "camera_1/rgb_00223.jpg")
    fb = gallery.frame(MAP + "camera_0/rgb_00225.jpg")
    rig1 = Pose.from_qt([-0.8660254037844386, 0.0, 0.5, 0.0], [0.0, 0.0, -0.1])
    rig0 = Pose.from_qt([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -0.1])
    right = median_epipolar_error(fa, fb)
    wa, wb = _rig_variants(fa, rig1), _rig_variants(fb, rig0)
    for key in ("rig order swapped", "rig ignored"):
        assert median_epipolar_error(wa[key], wb[key]) > max(3.0, 10 * right), key


# ------------------------------------------------------------------ synthetic folders
HDR = "# kapture format: 1.1\n"


def _write_kapture(root: Path, *, sensors=None, records=None, traj=None, rigs=None, images=("a.jpg", "b.jpg")):
    s = root / "sensors"
    (s / "records_data").mkdir(parents=True)
    img = np.full((30, 40, 3), 128, np.uint8)
    for name in images:
        cv2.imwrite(str(s / "records_data" / name), img)
    (s / "sensors.txt").write_text(HDR + (sensors or
                                         "cam0, , camera, PINHOLE, 40, 30, 50, 50, 20, 15\n"
                                         "cam1, , camera, SIMPLE_RADIAL, 40, 30, 50, 20, 15, 0.01\n"
                                         "imu, , accelerometer\n"))
    (s / "records_camera.txt").write_text(HDR + (records or "1, cam0, a.jpg\n1, cam1, b.jpg\n"))
    if traj is not None:
        (s / "trajectories.txt").write_text(HDR + traj)
    if rigs is not None:
        (s / "rigs.txt").write_text(HDR + rigs)
    return root


def test_rig_composition_exact(tmp_path):
    rig_from_world = Pose.from_qt([0.9, 0.1, -0.3, 0.2], [1.0, -2.0, 0.5])
    cam1_from_rig = Pose.from_qt([0.5, 0.5, 0.5, -0.5], [0.1, 0.0, -0.2])
    cam0_direct = Pose.from_qt([0.2, -0.9, 0.1, 0.3], [3.0, 1.0, 2.0])

    def line(p):
        return ", ".join(repr(float(v)) for v in [*p.q, *p.t])
    root = _write_kapture(tmp_path / "k", traj=f"1, rig, {line(rig_from_world)}\n1, cam0, {line(cam0_direct)}\n",
                          rigs=f"rig, cam1, {line(cam1_from_rig)}\n")
    s = kapture.load(root)
    assert np.allclose(s.frame("b.jpg").cam_from_world.matrix(), (cam1_from_rig * rig_from_world).matrix())
    assert np.allclose(s.frame("a.jpg").cam_from_world.matrix(), cam0_direct.matrix())   # device = camera
    assert s.frame("b.jpg").camera.model == "SIMPLE_RADIAL"


def test_missing_image_skipped_and_noted(tmp_path):
    root = _write_kapture(tmp_path / "k", records="1, cam0, a.jpg\n2, cam0, gone.jpg\n1, cam1, b.jpg\n")
    s = kapture.load(root)
    assert [f.name for f in s] == ["a.jpg", "b.jpg"]
    assert not any(f.has_pose for f in s)                     # no trajectories.txt
    assert any("1 of 3 records skipped" in n for n in s.notes)


def test_truncated_trajectory_line(tmp_path):
    root = _write_kapture(tmp_path / "k", traj="1, cam0, 1.0, 0.0, 0.0, 0.0, 1.0, 2.0\n")
    with pytest.raises(DataError, match=r"trajectories\.txt:2"):
        kapture.load(root)


def test_bad_number_in_trajectory(tmp_path):
    root = _write_kapture(tmp_path / "k", traj="1, cam0, 1.0, 0.0, 0.0, x, 1.0, 2.0, 3.0\n")
    with pytest.raises(DataError, match=r"trajectories\.txt"):
        kapture.load(root)


def test_unknown_camera_model(tmp_path):
    root = _write_kapture(tmp_path / "k", sensors="cam0, , camera, FISHEYE42, 40, 30, 50, 20, 15\n",
                          records="1, cam0, a.jpg\n")
    with pytest.raises(DataError, match=r"sensors\.txt.*unknown camera model"):
        kapture.load(root)


def test_record_of_unknown_sensor(tmp_path):
    root = _write_kapture(tmp_path / "k", records="1, cam9, a.jpg\n")
    with pytest.raises(DataError, match=r"records_camera\.txt:2.*cam9"):
        kapture.load(root)


def test_not_a_kapture_folder(tmp_path):
    assert not kapture.detect(tmp_path)
    with pytest.raises(DataError, match="kapture"):
        kapture.load(tmp_path)
