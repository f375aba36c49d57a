"""The retrieval pose baselines behind the common interface and evaluation."""
import json

import numpy as np
import pytest

import vloc
from vloc.cli import main
from vloc.datasets.synthetic import SyntheticConfig, generate_scene
from vloc.geometry import pose_errors
from vloc.localizers import Query


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    return generate_scene(tmp_path_factory.mktemp("room") / "scene",
                          SyntheticConfig(n_mapping=24, n_query=6, seed=7))


@pytest.fixture(scope="module")
def retrieval_map(room, tmp_path_factory):
    out = tmp_path_factory.mktemp("maps") / "retrieval"
    vloc.build_map(room, out, method="retrieval-top1", split="official", progress=False)
    return out


def _nearest_mapping_distance(room, q):
    fold = room.split("official")[0]
    return min(np.linalg.norm(f.cam_from_world.center - q.cam_from_world.center) for f in fold.mapping)


def test_top1_returns_a_mapping_pose_near_the_query(room, retrieval_map):
    loc = vloc.load_localizer(retrieval_map)
    fold = room.split("official")[0]
    mapping_centres = np.array([f.cam_from_world.center for f in fold.mapping])
    errs = []
    for q in fold.query:
        est = loc.localize(Query(q.name, image_path=q.image_path, camera=q.camera))
        assert est.success and est.inliers == 0 and "retrieval" in est.timings
        # top-1 is exactly one of the mapping poses
        assert np.min(np.linalg.norm(mapping_centres - est.cam_from_world.center, axis=1)) < 1e-9
        errs.append(pose_errors(est.cam_from_world, q.cam_from_world)[0] - _nearest_mapping_distance(room, q))
    # mostly the nearest mapping image, or one close to it
    assert np.median(errs) < 0.3


def test_interpolated_mode_and_evaluation_json(room, retrieval_map, tmp_path):
    out = tmp_path / "r.json"
    assert main(["evaluate", str(room.root), "--split", "official", "--method", "retrieval-interpolated",
                 "--json", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["meta"]["method"] == "retrieval-interpolated" and doc["summary"]["queries"] == 6
    assert doc["summary"]["median_translation_error"] < 1.0           # metres, a 10 x 8 m room
    assert all(q["success"] for q in doc["queries"])


def test_map_config_from_toml_and_unknown_option(room, tmp_path, capsys):
    toml = tmp_path / "map.toml"
    toml.write_text('[map]\nglobal_descriptor = "bow"\nresize_max = 640\n')
    assert main(["map", str(room.root), "--split", "official", "--method", "retrieval-top1",
                 "--config", str(toml), "-o", str(tmp_path / "m"), "-q"]) == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["map"]["global_descriptor"] == "bow"
    assert manifest["config"]["extractor"]["resize_max"] == 640
    assert main(["map", str(room.root), "--method", "retrieval-top1", "--pairs", "poses",
                 "-o", str(tmp_path / "m2"), "-q"]) == 2
    assert "unknown retrieval map option(s) pairs" in capsys.readouterr().err


def test_retrieval_recall_with_measured_visibility(temple):
    from vloc.evaluation.covisibility import retrieval_recall
    r = retrieval_recall(temple, "odd-even", k=5, min_share=0.3, progress=False)
    assert r.queries == 9 and r.answerable == 9
    assert r.recall == 1.0
    for row in r.per_query:
        assert 0.3 <= row["best_share"] <= 1.0 and len(row["top"]) == 5


def test_hierarchical_localization_on_the_synthetic_room(room, tmp_path):
    fold = room.split("official")[0]
    st = vloc.build_map(list(fold.mapping), tmp_path / "h", method="hierarchical", progress=False)["stats"]
    assert st["images"] == 24
    loc = vloc.load_localizer(tmp_path / "h")
    errs = []
    for q in fold.query:
        est = loc.localize(Query(q.name, image_path=q.image_path, camera=q.camera))
        assert "retrieval" in est.timings and "matching" in est.timings
        if est.success:
            errs.append(pose_errors(est.cam_from_world, q.cam_from_world))
        else:
            assert "inliers" in est.reason or "match" in est.reason
    errs = np.array(errs)
    assert len(errs) >= 5                                                # of 6
    assert np.median(errs[:, 0]) < 0.01 and np.median(errs[:, 1]) < 0.2  # 1 cm, 0.2 deg
    assert errs[:, 0].max() < 0.05                                       # no wrong success
