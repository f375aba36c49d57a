"""Middlebury importer on the real templeRing (partial) and templeSparseRing sets."""
import numpy as np
import pytest

from vloc.datasets.importers import middlebury
from vloc.errors import DataError

from .epipolar import inverted, median_epipolar_error

OTHERS = ["strecha", "strecha/fountain-P11", "tum_fr3_long_office_household", "nerf_fox",
          "7scenes_stairs_sample", "virtual_gallery_tutorial", "aachen_day_night_sample",
          "maupertuis_colmap_sample"]


@pytest.fixture(scope="module")
def ring(shared_data):
    return middlebury.load(shared_data / "middlebury_temple" / "templeRing")


@pytest.fixture(scope="module")
def sparse(shared_data):
    return middlebury.load(shared_data / "middlebury_temple" / "templeSparseRing" / "templeSR_par.txt")


def test_detect(shared_data):
    root = shared_data / "middlebury_temple"
    for p in [root / "templeRing", root / "templeSparseRing", root / "templeRing" / "templeR_par.txt", root]:
        assert middlebury.detect(p), p
    for other in OTHERS:
        assert not middlebury.detect(shared_data / other), other


def test_counts_and_camera(ring, sparse):
    assert len(ring) == 19 and len(ring.posed_frames) == 19       # 28 of 47 views have no image
    assert ring.notes == ["skipped 28 of 47 views listed in templeR_par.txt: image missing"]
    assert len(sparse) == 16 and not sparse.notes
    assert {f.name for f in ring} == {f"templeR{i:04d}.png" for i in range(13, 32)}
    (cam,) = ring.cameras
    assert (cam.width, cam.height) == (640, 480)
    np.testing.assert_allclose(cam.params, (1520.4, 1525.9, 302.82, 247.37))  # cx, cy + 0.5
    # suggested split: map = odd views (10), query = even views (9)
    (fold,) = ring.split("odd-even")
    assert (len(fold.mapping), len(fold.query)) == (10, 9)
    # cameras ~0.55 m from the object (metres)
    d = [np.linalg.norm(f.cam_from_world.center) for f in ring]
    assert 0.4 < min(d) and max(d) < 0.8


def test_parent_with_two_sets_is_refused(shared_data):
    with pytest.raises(DataError, match="different world frames"):
        middlebury.load(shared_data / "middlebury_temple")


@pytest.mark.parametrize("which,pairs", [
    ("ring", [("templeR0013.png", "templeR0015.png"), ("templeR0021.png", "templeR0023.png")]),
    ("sparse", [("templeSR0001.png", "templeSR0002.png")]),
])
def test_pose_convention_epipolar(ring, sparse, which, pairs):
    scene = {"ring": ring, "sparse": sparse}[which]
    for a, b in pairs:
        fa, fb = scene.frame(a), scene.frame(b)
        right = median_epipolar_error(fa, fb)
        wrong = median_epipolar_error(inverted(fa), inverted(fb))
        assert right < 1.5, (a, b, right)                      # measured 0.12-0.15 px
        assert wrong > max(5.0, 20 * right), (a, b, wrong)     # measured 8-14 px


LINE = ("img0001.png 1520.4 0 302.32 0 1525.9 246.87 0 0 1 "
        "1 0 0 0 1 0 0 0 1 0.01 0.02 0.5")


def _write_set(tmp_path, lines):
    folder = tmp_path / "set"
    folder.mkdir()
    from vloc._libs import cv2
    cv2.imwrite(str(folder / "img0001.png"), np.zeros((48, 64, 3), np.uint8))
    (folder / "set_par.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_tmp_set_loads(tmp_path):
    folder = _write_set(tmp_path, ["2", LINE, LINE.replace("img0001", "img0002")])
    scene = middlebury.load(folder)
    assert len(scene) == 1 and "skipped 1 of 2" in scene.notes[0]
    f = scene.frame("img0001.png")
    assert (f.camera.width, f.camera.height) == (64, 48)
    np.testing.assert_allclose(f.cam_from_world.t, [0.01, 0.02, 0.5])  # world-to-camera as is


@pytest.mark.parametrize("lines,match", [
    (["1", LINE.rsplit(" ", 1)[0]], "expected 22 values"),
    (["1", LINE.replace("302.32", "x")], "bad number"),
    (["2", LINE], "declares 2 views"),
    (["1", LINE.replace("1 0 0 0 1 0 0 0 1", "1 0 0 0 1 0 0 0 3")], "not a rotation"),
    (["1", LINE.replace("0 0 1 1 0 0", "0 0.5 1 1 0 0")], "K must be"),
])
def test_malformed_par_file(tmp_path, lines, match):
    folder = _write_set(tmp_path, lines)
    with pytest.raises(DataError, match=match) as e:
        middlebury.load(folder)
    assert "set_par.txt" in str(e.value)
