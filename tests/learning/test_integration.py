"""posenet / mapnet through the registry, the API and the CLI."""
import json

import numpy as np
import pytest

import vloc
from vloc.cli import main
from vloc.errors import DataError, MapError, VlocError
from vloc.localizers import Query
from vloc.localizers.regression import PoseRegressionConfig, RegressionLocalizer

FAST = PoseRegressionConfig(image_size=48, epochs=2, batch_size=8, width=4, feature_dim=16)


def test_build_map_load_localizer_and_bad_input(tiny_room, tmp_path, capsys):
    out = tmp_path / "posenet"
    manifest = vloc.build_map(tiny_room, out, FAST, method="posenet", split="official", progress=False)
    assert manifest["method"] == "posenet" and manifest["stats"]["images"] == 40
    assert manifest["stats"]["validation_images"] == 4 and set(manifest["files"]) >= {"model.pt", "network.json"}
    fit = manifest["stats"]["training_fit"]                         # the 36 training frames, no augmentation
    assert fit["median_centre_error"] > 0 and 0 < fit["median_rotation_deg"] < 180
    assert manifest["stats"]["learned_weights"] is None             # hand-tuned loss
    assert not list(tmp_path.glob(".*training.pt"))                 # checkpoint removed once written
    loc = vloc.load_localizer(out)
    assert isinstance(loc, RegressionLocalizer) and not loc.model.training
    q = tiny_room.split("official")[0].query[0]
    est = loc.localize(Query(q.name, image_path=q.image_path, camera=q.camera))
    assert est.success and set(est.timings) == {"read", "regression"}
    assert np.isfinite(est.cam_from_world.center).all()
    assert loc.preprocess(np.zeros((96, 128, 3), np.uint8)).shape == (1, 3, 36, 48)
    # the same pose from decoded pixels
    from vloc.imageio import read_image
    same = loc.localize(Query(q.name, image=read_image(q.image_path)[0], camera=q.camera))
    assert np.allclose(same.cam_from_world.center, est.cam_from_world.center, atol=1e-3)
    assert main(["localize", str(out), str(q.image_path)]) == 0        # a regressed pose has no matches to count
    assert f"{q.image_path}: OK  no matches  centre" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="method posenet localizes from colour alone: --depth is ignored"):
        assert main(["localize", str(out), str(q.image_path), "--depth", str(q.depth_path)]) == 0
    with pytest.raises(DataError, match="image not found"):
        loc.localize(Query("x", image_path=tmp_path / "missing.png"))
    with pytest.raises(DataError, match="camera says"):
        loc.localize(Query("x", image=np.zeros((10, 10, 3), np.uint8), camera=q.camera))
    with pytest.raises(VlocError, match="an image must be"):
        loc.localize(Query("x", image=np.zeros((10, 10, 4), np.uint8)))
    with pytest.raises(MapError, match="output exists"):
        vloc.build_map(tiny_room, out, FAST, method="posenet", split="official", progress=False)


def test_cli_evaluate_mapnet_json_and_options(tiny_room, tmp_path, capsys):
    toml = tmp_path / "fast.toml"
    toml.write_text("[map]\nimage_size = 48\nbatch_size = 8\nwidth = 4\nfeature_dim = 16\n")
    js = tmp_path / "mapnet.json"
    assert main(["evaluate", str(tiny_room.root), "--split", "official", "--method", "mapnet", "--loss", "learned",
                 "--beta", "2", "--epochs", "2", "--config", str(toml), "--json", str(js), "-q"]) == 0
    doc = json.loads(js.read_text())
    assert doc["meta"]["method"] == "mapnet" and doc["config"]["map"]["loss"] == "learned"
    assert doc["config"]["map"]["beta"] == 2 and doc["summary"]["queries"] == 8
    assert main(["map", str(tiny_room.root), "-o", str(tmp_path / "m"), "--loss", "learned"]) == 2
    assert "--loss does not apply to method structure" in capsys.readouterr().err
    toml.write_text("[map]\nloss = 'l1'\n")
    assert main(["map", str(tiny_room.root), "-o", str(tmp_path / "m"), "--method", "posenet",
                 "--config", str(toml)]) == 2
    assert "loss must be one of hand-tuned, learned, reprojection" in capsys.readouterr().err
    assert "posenet" in vloc.localizers.registry.METHODS and "mapnet" in vloc.localizers.registry.METHODS
