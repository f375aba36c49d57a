"""NVM importer (aachen_day_night_sample/3D-models).

No SIFT epipolar check here: the sample's 3 database images show different parts of
the city (camera centres 25-80 units apart, little or no overlap). Measured medians
for the *right* poses are 30-270 px (matches are mostly wrong), so the check cannot
tell conventions apart. The 5 NVM points cannot be used either: their measurements
refer to image indices of the full Aachen model, not of this 3-image excerpt.
Instead the poses are cross-checked against two independent files of the same model:
the kapture trajectories (world-to-camera q, t) and the Bundler `.out` file
(R, t in Bundler's camera axes y up, z backward)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from vloc.datasets import detect_format
from vloc.datasets.importers import kapture, nvm
from vloc.errors import DataError
from vloc.geometry import Pose

AACHEN = "aachen_day_night_sample"
NVM_FILE = f"{AACHEN}/3D-models/aachen_cvpr2018_db.nvm"
OTHER = ["virtual_gallery_tutorial", "maupertuis_colmap_sample", "nerf_fox", f"{AACHEN}/kapture",
         f"{AACHEN}/images_upright", "strecha", "middlebury_temple", "tum_fr3_long_office_household",
         "7scenes_stairs_sample", f"{AACHEN}/3D-models/aachen_cvpr2018_db.out", "."]


@pytest.fixture(scope="module")
def scene(shared_data):
    return nvm.load(shared_data / AACHEN)


@pytest.mark.parametrize("rel", [AACHEN, NVM_FILE, f"{AACHEN}/3D-models/aachen_two_parts.nvm"])
def test_detects_nvm(shared_data, rel):
    assert nvm.detect(shared_data / rel)


@pytest.mark.parametrize("rel", OTHER)
def test_does_not_detect_other_datasets(shared_data, rel):
    assert not nvm.detect(shared_data / rel)


def test_registry_aachen_folder_is_nvm_its_kapture_subfolder_is_kapture(shared_data):
    assert detect_format(shared_data / AACHEN) == "nvm"
    assert detect_format(shared_data / AACHEN / "kapture") == "kapture"


def test_counts_and_cameras(scene, shared_data):
    assert scene.format == "nvm" and scene.name == AACHEN and not scene.metric
    assert [f.name for f in scene] == ["db/1045.jpg", "db/4446.jpg", "db/1135.jpg"]
    assert all(f.has_pose for f in scene)
    assert all(f.image_path == shared_data / AACHEN / "images_upright" / f.name for f in scene)
    c = scene.frame("db/4446.jpg").camera
    # f from the nvm, principal point = image centre, k = -r (nvm r = 0.086426)
    assert (c.model, c.width, c.height) == ("SIMPLE_RADIAL", 1200, 1600)
    assert c.params == (1556.98, 600.0, 800.0, -0.086426)
    assert scene.notes == []


def test_poses_match_kapture(scene, shared_data):
    """kapture's trajectories store world-to-camera (q, t); the nvm stores q and the
    camera centre. Same model -> identical poses and cameras."""
    k = kapture.load(shared_data / AACHEN / "kapture")
    for f in scene:
        g = k.frame("training/" + f.name)
        assert np.allclose(f.cam_from_world.matrix(), g.cam_from_world.matrix(), atol=1e-6)
        assert f.camera == g.camera
        # the wrong reading (centre taken as translation) is far off
        wrong = Pose(f.cam_from_world.R, f.cam_from_world.center)
        assert np.abs(wrong.matrix() - g.cam_from_world.matrix()).max() > 10


def _read_bundler(path):
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    n = int(lines[0].split()[0])
    cams = []
    for i in range(n):
        block = np.array([[float(v) for v in ln.split()] for ln in lines[1 + 5 * i: 6 + 5 * i]])
        cams.append((block[1:4], block[4]))
    return cams


def test_poses_match_bundler(scene, shared_data):
    """Bundler: x = R X + t with camera axes x right, y up, z backward. This .out's world
    frame also has y and z negated w.r.t. the nvm's (its first 3D point is
    769.607 -14.6241 -19.7262, the nvm's 769.607 14.6241 19.7262), so with
    F = diag(1, -1, -1): cam_from_world = (F R F, F t)."""
    F = np.diag([1.0, -1.0, -1.0])
    cams = _read_bundler(shared_data / AACHEN / "3D-models" / "aachen_cvpr2018_db.out")
    assert len(cams) == len(scene)
    for f, (R, t) in zip(scene, cams):
        assert np.allclose(f.cam_from_world.R, F @ R @ F, atol=1e-6)
        assert np.allclose(f.cam_from_world.t, F @ t, rtol=1e-7, atol=1e-5)
        assert not np.allclose(f.cam_from_world.R, R.T, atol=1e-2)      # not the transposed reading


def test_nvm_file_and_multi_model_file(shared_data):
    s = nvm.load(shared_data / NVM_FILE)
    assert len(s) == 3 and s.name == "aachen_cvpr2018_db"
    two = nvm.load(shared_data / AACHEN / "3D-models" / "aachen_two_parts.nvm")
    assert [f.name for f in two] == ["db/1045.jpg", "db/4446.jpg"]
    assert any("only the first" in n for n in two.notes)


def test_ambiguous_folder(shared_data, tmp_path):
    d = tmp_path / "ds" / "3D-models"
    d.mkdir(parents=True)
    shutil.copy(shared_data / NVM_FILE, d / "a.nvm")
    shutil.copy(shared_data / NVM_FILE, d / "b.nvm")
    assert nvm.detect(tmp_path / "ds")
    with pytest.raises(DataError, match="several .nvm models"):
        nvm.load(tmp_path / "ds")


def test_missing_images_skipped(shared_data, tmp_path):
    f = tmp_path / "model.nvm"
    shutil.copy(shared_data / NVM_FILE, f)
    s = nvm.load(f)
    assert len(s) == 0 and any("3 of 3 cameras skipped" in n for n in s.notes)


@pytest.mark.parametrize("text, match", [
    ("NVM_V3\n\n1\ndb/1045.jpg 1084.59 1 0 0\n", r"model\.nvm:4: expected 'name f qw"),
    ("NVM_V3\n\n1\ndb/1045.jpg 1084.59 1 0 0 x 1 2 3 0.1 0\n", r"model\.nvm:4: bad camera line"),
    ("NVM_V3\n\n3\ndb/1045.jpg 1084.59 1 0 0 0 1 2 3 0.1 0\n", r"model\.nvm: 3 cameras announced"),
    ("NVM_V2\n", r"model\.nvm: not an NVM_V3 file"),
])
def test_malformed(tmp_path, text, match):
    f = tmp_path / "model.nvm"
    f.write_text(text)
    with pytest.raises(DataError, match=match):
        nvm.load(f)
