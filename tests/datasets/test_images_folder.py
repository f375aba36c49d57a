"""A plain folder of photographs (no poses): imported with camera priors, mapped by
structure-from-motion that refines the focal length, queries localized in that map."""
import math
import shutil

import numpy as np
import pytest

import vloc
from vloc.cli import main
from vloc.geometry.exif import prior_camera
from vloc.localizers import Query

FOUNTAIN_FOCAL = 2759.48          # fountain-P11's calibrated focal length (px, 3072 x 2048)


@pytest.fixture(scope="module")
def fountain(shared_data):
    return vloc.Scene.load(shared_data / "strecha" / "fountain-P11")


@pytest.fixture(scope="module")
def photos(fountain, tmp_path_factory):
    """fountain-P11's images without their calibration: ten in photos/ (one in a
    sub-folder), 0005.jpg apart as the query, and files that are not photos."""
    root = tmp_path_factory.mktemp("photos")
    (root / "photos" / "day2").mkdir(parents=True)
    (root / "photos" / ".thumbnails").mkdir()
    for f in fountain.frames:
        name = f.image_path.name
        dst = root / "q.jpg" if name == "0005.jpg" else root / "photos" / ("day2" if name == "0010.jpg" else "") / name
        shutil.copy(f.image_path, dst)
    shutil.copy(fountain.frames[0].image_path, root / "photos" / ".thumbnails" / "x.jpg")
    (root / "photos" / "notes.txt").write_text("not an image")
    return root


def test_folder_import(photos):
    scene = vloc.Scene.load(photos / "photos")
    assert scene.format == "images" and not scene.metric and len(scene) == 10
    assert scene.frames[-1].name == "day2/0010.jpg" and "0005.jpg" not in [f.name for f in scene]
    assert all(f.camera_prior and not f.has_pose for f in scene)
    cam, = scene.cameras                                   # same size, same guess: one camera
    assert (cam.model, cam.width, cam.height) == ("SIMPLE_RADIAL", 3072, 2048)
    assert cam.params == pytest.approx((1.2 * 3072, 1536, 1024, 0))
    fold, = scene.split("all")
    assert len(fold.mapping) == 10 and not fold.query


def test_exif_focal_and_fallback_detection(tmp_path, fountain, capsys):
    from PIL import Image
    im = Image.new("RGB", (400, 300))
    exif = im.getexif()
    exif.get_ifd(0x8769)[0xA405] = 28                      # 35 mm equivalent focal length
    im.save(tmp_path / "a.jpg", exif=exif)
    im.save(tmp_path / "b.png")
    Image.fromarray(np.full((300, 400), 1500, np.uint16)).save(tmp_path / "depth.png")   # a depth map
    scene = vloc.Scene.load(tmp_path)
    a, b = scene.frames
    assert any("1 16-bit" in n for n in scene.notes)
    assert a.camera.params[0] == pytest.approx(28 / 43.27 * math.hypot(400, 300))
    assert b.camera == prior_camera((400, 300), None)
    assert vloc.Scene.load(fountain.root).format == "strecha"          # a folder of images is the last guess
    assert main(["info", str(tmp_path / "empty")]) == 2 and "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["info", str(tmp_path / "empty")]) == 2 and "no image files" in capsys.readouterr().err


def test_map_from_photos_and_localize(photos, fountain, tmp_path, capsys):
    """`vloc map photos/` with retrieval pairs (3 per image): every image registered, the
    1.2 x width guess refined to the calibrated focal, the camera centres where the
    ground truth has them up to a similarity; the held-out photo, focal unknown, too."""
    from vloc._libs import pycolmap
    (tmp_path / "m.toml").write_text("[map]\nnum_pairs = 3\n")
    assert main(["map", str(photos / "photos"), "-o", str(tmp_path / "map"), "--resize-max", "1024",
                 "--pairs", "retrieval", "--config", str(tmp_path / "m.toml"), "-q"]) == 0
    rec = pycolmap.Reconstruction(str(tmp_path / "map" / "model"))
    assert rec.num_reg_images() == 10
    cam, = rec.cameras.values()
    assert cam.params[0] == pytest.approx(FOUNTAIN_FOCAL, rel=0.005)
    gt = {f.image_path.name: f.cam_from_world.center for f in fountain.frames}
    names = sorted(im.name for im in rec.images.values())
    sfm = np.array([rec.find_image_with_name(n).projection_center() for n in names])
    truth = np.array([gt[n.split("/")[-1]] for n in names])
    truth_from_sfm = pycolmap.estimate_sim3d(sfm, truth)
    assert np.abs(truth_from_sfm * sfm - truth).max() < 0.02          # 2 cm, cameras ~5 m from the fountain
    est = vloc.load_localizer(tmp_path / "map").localize(Query("q.jpg", image_path=photos / "q.jpg"))
    assert est.success and est.inliers > 200, est.reason
    assert est.camera.fx == pytest.approx(FOUNTAIN_FOCAL, rel=0.01)
    assert np.linalg.norm(truth_from_sfm * est.cam_from_world.center - gt["0005.jpg"]) < 0.02


def test_pose_methods_refuse_photos_without_poses(photos, tmp_path, capsys):
    for method in ("retrieval-top1", "posenet", "tiled"):
        assert main(["map", str(photos / "photos"), "--method", method, "-o", str(tmp_path / method)]) == 2
        err = capsys.readouterr().err
        assert "pose" in err and err.count("\n") == 1, err
    assert main(["evaluate", str(photos / "photos"), "--split", "odd-even"]) == 2
    assert "ground-truth pose" in capsys.readouterr().err


def test_evaluate_an_sfm_map_against_ground_truth(fountain, tmp_path, capsys):
    """`vloc evaluate MAP DATA` with a map made by SfM from copies of the odd-even
    mapping photos: the estimates are carried into the ground truth's frame by the
    similarity of the 5 map images' centres; a split whose queries are map photos is
    refused, matched by file name."""
    from vloc.evaluation.run import evaluate
    (tmp_path / "photos").mkdir()
    for f in fountain.split("odd-even")[0].mapping:
        shutil.copy(f.image_path, tmp_path / "photos" / f.image_path.name)
    from vloc.maps.config import MapConfig
    vloc.build_map(tmp_path / "photos", tmp_path / "map", MapConfig(resize_max=1024), progress=False)
    run = evaluate(fountain, "odd-even", map_dir=tmp_path / "map", progress=False)
    assert run.meta["alignment"]["images"] == 5 and run.meta["alignment"]["rms"] < 0.02
    assert run.summary["failures"] == 0 and run.summary["median_translation_error"] < 0.05     # 5 cm
    assert run.summary["median_rotation_error"] < 0.5
    assert main(["evaluate", str(tmp_path / "map"), str(fountain.root), "--split", "even-odd", "-q"]) == 2
    assert "query frame(s) of this split are in the map" in capsys.readouterr().err
