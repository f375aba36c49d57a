"""NeRF / instant-ngp transforms.json importer: detection, counts, pose convention on
nerf_fox (SIFT epipolar check with distortion removed) and bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vloc._libs import cv2
from vloc.datasets import detect_format
from vloc.datasets.importers import nerf
from vloc.errors import DataError
from vloc.geometry import Pose

from .epipolar import inverted, median_epipolar_error

FOX = "nerf_fox"
OTHER = ["virtual_gallery_tutorial", "virtual_gallery_tutorial/mapping", "maupertuis_colmap_sample",
         "aachen_day_night_sample", "aachen_day_night_sample/kapture", "strecha", "strecha/fountain-P11",
         "middlebury_temple/templeRing", "tum_fr3_long_office_household", "7scenes_stairs_sample/microsoft/stairs",
         "nerf_fox/images", "."]


@pytest.fixture(scope="module")
def fox(shared_data):
    return nerf.load(shared_data / FOX)


@pytest.fixture(scope="module")
def raw(shared_data):
    data = json.loads((shared_data / FOX / "transforms.json").read_text())
    return {f["file_path"]: np.array(f["transform_matrix"]) for f in data["frames"]}


@pytest.mark.parametrize("rel", [FOX, f"{FOX}/transforms.json"])
def test_detects_nerf(shared_data, rel):
    assert nerf.detect(shared_data / rel)


@pytest.mark.parametrize("rel", OTHER)
def test_does_not_detect_other_datasets(shared_data, rel):
    assert not nerf.detect(shared_data / rel)


def test_registry_picks_nerf(shared_data):
    assert detect_format(shared_data / FOX) == "nerf"


def test_counts_and_camera(fox, shared_data):
    assert fox.format == "nerf" and fox.name == FOX and not fox.metric
    assert len(fox) == 50 and len(fox.posed_frames) == 50
    assert fox.notes == ["transforms.json: 17 of 67 frames skipped (image file missing)"]
    assert "images/0005.jpg" not in {f.name for f in fox}
    assert all(f.image_path == shared_data / FOX / f.name for f in fox)
    (cam,) = fox.cameras
    assert cam.model == "OPENCV" and (cam.width, cam.height) == (1080, 1920)
    assert cam.params == (1375.52, 1374.49, 554.558, 965.268, 0.0578421, -0.0805099, -0.000980296, 0.00015575)
    assert fox.official_splits == {}
    # the json file itself loads the same scene
    assert [f.name for f in nerf.load(shared_data / FOX / "transforms.json")] == [f.name for f in fox]


def test_pose_is_flipped_inverse_of_transform_matrix(fox, raw):
    for f in fox.frames[:5]:
        M = raw[f.name]
        p = f.cam_from_world
        assert np.allclose(p.center, M[:3, 3])                   # camera centre = translation column
        assert np.allclose(p.R.T @ [0, 0, 1], -M[:3, 2])         # OpenCV +z = OpenGL -z
        assert np.allclose(p.R.T @ [0, 1, 0], -M[:3, 1])         # OpenCV +y (down) = OpenGL -y


@pytest.mark.parametrize("a, b, check_wrong", [
    ("images/0001.jpg", "images/0002.jpg", False),   # tiny motion: wrong conventions only 2.8-8.9 px
    ("images/0018.jpg", "images/0021.jpg", True),
    ("images/0033.jpg", "images/0035.jpg", True),
])
def test_epipolar(fox, raw, a, b, check_wrong):
    """Measured (px, images resized to 1024 high): 0.17 / 0.29 / 0.28; without the
    OpenGL flip 2.8 / 13.2 / 75.0; inverted 8.9 / 23.3 / 73.7. (Ignoring the
    distortion: 0.17 / 0.34 / 0.43.)"""
    fa, fb = fox.frame(a), fox.frame(b)
    assert median_epipolar_error(fa, fb) < 1.5
    if check_wrong:
        def no_flip(f):
            return f.with_pose(Pose.from_matrix(raw[f.name]).inverse())
        assert median_epipolar_error(no_flip(fa), no_flip(fb)) > 10.0
        assert median_epipolar_error(inverted(fa), inverted(fb)) > 10.0


# ------------------------------------------------------------------ synthetic files
def _pose_matrix(angle=0.3, t=(0.5, -0.2, 3.0)):
    c, s = math.cos(angle), math.sin(angle)
    M = np.eye(4)
    M[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    M[:3, 3] = t
    return M.tolist()


def _image(path: Path, w=40, h=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 100, np.uint8))


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_camera_angle_only_and_extensionless_paths(tmp_path):
    """NeRF-synthetic style: camera_angle_x only, no w/h, file_path without extension,
    split files -> official split."""
    for split, n in (("train", 2), ("test", 1)):
        frames = []
        for i in range(n):
            _image(tmp_path / split / f"r_{i}.png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": _pose_matrix(0.1 * i)})
        _write(tmp_path / f"transforms_{split}.json", {"camera_angle_x": 0.6911, "frames": frames})
    assert nerf.detect(tmp_path)
    s = nerf.load(tmp_path)
    assert [f.name for f in s] == ["train/r_0.png", "train/r_1.png", "test/r_0.png"]
    assert s.official_splits == {"official": (["train/r_0.png", "train/r_1.png"], ["test/r_0.png"])}
    cam = s.frames[0].camera
    f = 0.5 * 40 / math.tan(0.5 * 0.6911)
    assert cam.model == "PINHOLE" and (cam.width, cam.height) == (40, 30)
    assert np.allclose(cam.params, (f, f, 20.0, 15.0))


def test_per_frame_intrinsics_and_missing_image(tmp_path):
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg")
    data = {"fl_x": 50.0, "fl_y": 51.0, "cx": 20.0, "cy": 15.0, "w": 40, "h": 30,
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
            "frames": [{"file_path": "a.jpg", "transform_matrix": _pose_matrix()},
                       {"file_path": "b.jpg", "fl_x": 60.0, "fl_y": 60.0, "k1": 0.1,
                        "transform_matrix": _pose_matrix(0.2)},
                       {"file_path": "missing.jpg", "transform_matrix": _pose_matrix()}]}
    s = nerf.load(_write(tmp_path / "transforms.json", data))
    assert len(s) == 2 and any("1 of 3 frames skipped" in n for n in s.notes)
    assert s.frame("a.jpg").camera.model == "PINHOLE"
    assert s.frame("a.jpg").camera.params == (50.0, 51.0, 20.0, 15.0)
    b = s.frame("b.jpg").camera
    assert b.model == "OPENCV" and b.params == (60.0, 60.0, 20.0, 15.0, 0.1, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("frame, match", [
    ({"file_path": "a.jpg"}, "missing 'transform_matrix'"),
    ({"transform_matrix": _pose_matrix()}, "missing 'file_path'"),
    ({"file_path": "a.jpg", "transform_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}, "4x4"),
    ({"file_path": "a.jpg", "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, "x", 0], [0, 0, 0, 1]]},
     "not a numeric matrix"),
    ({"file_path": "a.jpg", "transform_matrix": np.diag([2.0, 2, 2, 1]).tolist()}, "not a rotation"),
    ({"file_path": "a.jpg", "transform_matrix": np.diag([1.0, 1, -1, 1]).tolist()}, "not a rotation"),
    ({"file_path": "a.jpg", "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]},
     "last row"),
])
def test_malformed_frame(tmp_path, frame, match):
    _image(tmp_path / "a.jpg")
    path = _write(tmp_path / "transforms.json", {"fl_x": 50.0, "w": 40, "h": 30, "frames": [frame]})
    with pytest.raises(DataError, match=r"transforms\.json: frames\[0\]: .*" + match):
        nerf.load(tmp_path)
    assert path.is_file()


def test_missing_focal_and_bad_json(tmp_path):
    _image(tmp_path / "a.jpg")
    _write(tmp_path / "transforms.json", {"w": 40, "h": 30,
                                          "frames": [{"file_path": "a.jpg", "transform_matrix": _pose_matrix()}]})
    with pytest.raises(DataError, match=r"transforms\.json.*no focal length"):
        nerf.load(tmp_path)
    (tmp_path / "transforms.json").write_text('{"frames": [')
    with pytest.raises(DataError, match=r"transforms\.json: cannot read json"):
        nerf.load(tmp_path)
    _write(tmp_path / "transforms.json", {"fl_x": 50.0})
    with pytest.raises(DataError, match=r"transforms\.json: missing 'frames'"):
        nerf.load(tmp_path)


def test_not_nerf(tmp_path):
    assert not nerf.detect(tmp_path)
    (tmp_path / "transforms.json").write_text('{"something": "else"}')
    assert not nerf.detect(tmp_path)
    with pytest.raises(DataError):
        nerf.load(tmp_path / "nothing")
