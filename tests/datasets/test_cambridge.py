"""Cambridge Landmarks importer on a small synthetic scene written to tmp_path
(there is no Cambridge data on this machine)."""
import numpy as np
import pytest

from vloc._libs import cv2
from vloc.datasets.importers import cambridge
from vloc.errors import DataError
from vloc.geometry import Pose, quat_to_rotmat

HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
W, H = 64, 36                                           # tiny stand-ins for 1024x576 frames


def _random_pose(rng) -> Pose:
    q = rng.normal(size=4)
    return Pose(quat_to_rotmat(q), rng.normal(size=3) * 10)


def _line(name: str, cam_from_world: Pose) -> str:
    # the format: camera centre, then the world-to-camera rotation as w x y z
    c, q = cam_from_world.center, cam_from_world.q
    return f"{name} " + " ".join(f"{v:.9f}" for v in [*c, *q])


def _write_scene(root, train, test, missing=()):
    root.mkdir(parents=True, exist_ok=True)
    for split, items in (("train", train), ("test", test)):
        (root / f"dataset_{split}.txt").write_text(HEADER + "\n".join(_line(n, p) for n, p in items) + "\n")
        for name, _ in items:
            if name not in missing:
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / name), np.full((H, W, 3), 128, np.uint8))
    return root


@pytest.fixture
def scene_and_poses(tmp_path):
    rng = np.random.default_rng(0)
    train = [(f"seq1/frame{i:05d}.png", _random_pose(rng)) for i in range(1, 6)]
    test = [(f"seq2/frame{i:05d}.png", _random_pose(rng)) for i in range(1, 4)]
    root = _write_scene(tmp_path / "KingsCollege", train, test, missing={"seq1/frame00005.png"})
    return cambridge.load(root), dict(train + test)


def test_detect(tmp_path, shared_data, scene_and_poses):
    scene, _ = scene_and_poses
    assert cambridge.detect(scene.root) and cambridge.detect(scene.root / "dataset_test.txt")
    for p in sorted(shared_data.iterdir()):
        assert not cambridge.detect(p), p
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "dataset_train.txt").write_text("something else\n")
    assert not cambridge.detect(tmp_path / "x")


def test_counts_split_camera(scene_and_poses):
    scene, _ = scene_and_poses
    assert scene.name == "KingsCollege" and len(scene) == 7 and len(scene.posed_frames) == 7
    mapping, query = scene.official_splits["official"]
    assert len(mapping) == 4 and len(query) == 3 and "seq1/frame00001.png" in mapping
    assert any("skipped 1 of 5 dataset_train.txt" in n for n in scene.notes)
    (cam,) = scene.cameras
    assert (cam.width, cam.height) == (W, H)
    assert (cam.cx, cam.cy) == (W / 2, H / 2)
    assert cam.fx == pytest.approx(744.375 / 480 * H)   # ~1675 px at 1080, ~893 px at 576


def test_pose_round_trip(scene_and_poses):
    scene, truth = scene_and_poses
    X = np.random.default_rng(1).normal(size=(20, 3)) * 5
    for f in scene:
        gt = truth[f.name]
        np.testing.assert_allclose(f.cam_from_world.R, gt.R, atol=1e-8)
        np.testing.assert_allclose(f.cam_from_world.t, gt.t, atol=1e-7)
        np.testing.assert_allclose(f.cam_from_world.transform(X), gt.transform(X), atol=1e-6)


def test_published_line(tmp_path):
    # ShopFacade seq1/frame00001.png as published: the position is the camera centre and the
    # quaternion the world-to-camera rotation (R(q) applied to world axes gives camera axes).
    line = "seq1/frame00001.png -0.157816 -10.413150 1.832074 0.712261 0.682691 -0.123193 0.106962"
    (tmp_path / "dataset_test.txt").write_text(HEADER + line + "\n")
    ((name, pose),) = cambridge.parse_pose_file(tmp_path / "dataset_test.txt")
    assert name == "seq1/frame00001.png"
    np.testing.assert_allclose(pose.center, [-0.157816, -10.413150, 1.832074], atol=1e-9)
    np.testing.assert_allclose(pose.R, quat_to_rotmat([0.712261, 0.682691, -0.123193, 0.106962]))


@pytest.mark.parametrize("line,match", [
    ("seq1/frame00001.png 1 2 3 1 0 0", "expected 8 values"),
    ("seq1/frame00001.png 1 2 3 1 0 0 zero", "bad number"),
    ("seq1/frame00001.png 1 2 3 0 0 0 0", "invalid quaternion"),
])
def test_malformed_lines(tmp_path, line, match):
    root = tmp_path / "s"
    root.mkdir()
    (root / "dataset_train.txt").write_text(HEADER + line + "\n")
    with pytest.raises(DataError, match=match) as e:
        cambridge.load(root)
    assert "dataset_train.txt:4" in str(e.value)
