"""The retrieval pose baselines behind the common interface and evaluation."""
import json

import numpy as np
import pytest

import vloc
from vloc.cli import main
from vloc.errors import VlocError
from vloc.geometry import pose_errors
from vloc.localizers import Query
from vloc.localizers.hierarchical import HierarchicalConfig, HierarchicalLocalizer
from vloc.maps.config import MapConfig


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


def test_evaluating_a_given_retrieval_map_honours_the_method(room, retrieval_map):
    """One retrieval map serves both methods: with --map, interpolated must not fall
    back to top-1 (it once did: the map's manifest says only 'retrieval')."""
    from vloc.evaluation.run import evaluate
    runs = {m: evaluate(room, "official", m, map_dir=retrieval_map, progress=False)
            for m in ("retrieval-top1", "retrieval-interpolated")}
    top1, interp = ({r.correspondences for r in runs[m].results}            # images used
                    for m in ("retrieval-top1", "retrieval-interpolated"))
    assert top1 == {1} and interp == {3}
    t1 = [r.translation_error for r in runs["retrieval-top1"].results]
    ti = [r.translation_error for r in runs["retrieval-interpolated"].results]
    assert sum(abs(a - b) > 1e-6 for a, b in zip(t1, ti)) >= 3


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
    assert "--pairs does not apply to method retrieval-top1" in capsys.readouterr().err
    toml.write_text('[map]\npairs = "poses"\n')
    assert main(["map", str(room.root), "--method", "retrieval-top1", "--config", str(toml),
                 "-o", str(tmp_path / "m3"), "-q"]) == 2
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
    with pytest.raises(VlocError, match="'lightglue' needs a map built with aliked .* this map has colmap-sift"):
        HierarchicalLocalizer.load(tmp_path / "h", HierarchicalConfig(matcher="lightglue"))
    # built around an existing structure map: files linked, hashes taken over, all verifiable
    from vloc.localizers.hierarchical import build_hierarchical_map
    from vloc.maps.mapdir import read_manifest
    build_hierarchical_map(list(fold.mapping), tmp_path / "h2", structure_map=tmp_path / "h" / "structure",
                           progress=False)
    assert (tmp_path / "h2" / "structure" / "points.h5").stat().st_ino == \
        (tmp_path / "h" / "structure" / "points.h5").stat().st_ino
    assert read_manifest(tmp_path / "h2", verify="sha256")["method"] == "hierarchical"


def test_hierarchical_with_lightglue_on_aliked(room, tmp_path, one_torch_thread):
    """An ALIKED map (at 320 px, 512 keypoints) and LightGlue against the top 3 images."""
    fold = room.split("official")[0]
    config = MapConfig(features="aliked", resize_max=320, max_keypoints=512)
    manifest = vloc.build_map(list(fold.mapping), tmp_path / "h", config, method="hierarchical", progress=False)
    assert manifest["stats"]["images"] == 24 and manifest["config"]["extractor"]["name"] == "aliked"
    loc = HierarchicalLocalizer.load(tmp_path / "h", HierarchicalConfig(k=3, matcher="lightglue"))
    errs = []
    for q in fold.query[:3]:
        est = loc.localize(Query(q.name, image_path=q.image_path, camera=q.camera))
        assert est.success and est.inliers >= 100, est.reason
        errs.append(pose_errors(est.cam_from_world, q.cam_from_world))
    errs = np.array(errs)
    assert errs[:, 0].max() < 0.03 and errs[:, 1].max() < 0.5            # 3 cm, 0.5 deg (at 320 px)


def test_covisibility_clusters_hand_made():
    from vloc.localizers.hierarchical import covisibility_clusters
    # a-b share points 1, 2; c-d share 7, 8; b-c share only point 5; e sees nothing in common
    seen = {"a": np.array([1, 2, -1, 3]), "b": np.array([2, 1, 5, -1]), "c": np.array([5, 7, -1, 8]),
            "d": np.array([7, 8]), "e": np.array([9, -1]), "f": np.array([-1, -1])}
    order = ["e", "a", "c", "b", "d", "f"]                 # retrieval order
    assert covisibility_clusters(order, seen) == [["a", "c", "b", "d"], ["e"], ["f"]]
    assert covisibility_clusters(order, seen, min_shared=2) == [["a", "b"], ["c", "d"], ["e"], ["f"]]


class _Stub:
    """Stands for the query extractor, the global encoder and the retrieval index."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def extract(self, image, size):
        return self.feats

    def encode(self, desc):
        return np.zeros(4, np.float32)

    def search(self, x, k):
        return None, np.arange(len(self.names))[None, :k]


def test_a_query_bridging_two_clusters_uses_both():
    """Two mapping images with no common point (the views between them are missing) that
    the query sees both: 20 correspondences each, below the 25-inlier minimum of one
    cluster, so all retrieved images are tried together."""
    from vloc.estimation import PoseConfig
    from vloc.features import Features
    from vloc.geometry import Camera, Pose
    from vloc.localizers.hierarchical import HierarchicalConfig, HierarchicalLocalizer
    rng = np.random.default_rng(0)
    cam = Camera.from_string("PINHOLE 640 480 500 500 320 240")
    truth = Pose.from_qt([0.99, 0.05, -0.1, 0.02], [0.2, -0.1, 0.3])
    xyz = truth.inverse().transform(rng.uniform([-2, -1.5, 4], [2, 1.5, 8], (40, 3)))
    kp = cam.project(truth.transform(xyz)).astype(np.float32)
    desc = rng.normal(size=(40, 128)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    ones = np.ones(40, np.float32)
    query = Features(kp, desc, ones, ones, (640, 480))
    images = {"a": desc[:20], "b": desc[20:]}         # mutual NN matching reads descriptors only
    p3d = {"a": np.arange(20), "b": np.arange(20, 40)}
    manifest = {"config": {"extractor": {"name": "sift", "resize_max": 640}}}

    def localize(**kw):
        loc = HierarchicalLocalizer(manifest, _Stub(), _Stub(names=["a", "b"]), images, p3d, xyz,
                                    HierarchicalConfig(k=2, **kw))
        loc.extractor = _Stub(feats=query)
        return loc.localize(Query("q", image=np.zeros((480, 640), np.uint8), camera=cam))

    for clustering in (True, False):
        est = localize(clustering=clustering)
        assert est.success and est.inliers == est.correspondences == 40
        assert pose_errors(est.cam_from_world, truth)[0] < 1e-6
    est = localize(pose=PoseConfig(min_inliers=50))
    assert not est.success
    assert est.reason == ("2 covisibility cluster(s) of the 2 retrieved images (and all together): "
                          "too few 2D-3D matches: at most 40 (from 2 image(s)), need 50 inliers")


def test_image_table_round_trip_and_bad_files(tmp_path):
    from vloc.errors import MapError
    from vloc.localizers.image_table import DESCRIPTORS, ImageTable, write_image_table
    rng = np.random.default_rng(0)
    names, sizes = ["a", "dir/b", "c"], [2, 0, 3]
    desc = [rng.normal(size=(n, 8)).astype(np.float32) for n in sizes]
    rows = [np.array([4, -1]), np.zeros(0, int), np.array([-1, 0, 7])]
    write_image_table(tmp_path, names, sizes, 8, zip(desc, rows))
    table = ImageTable.load(tmp_path)
    for n, d, r in zip(names, desc, rows):
        assert np.allclose(table.descriptors[n], d, atol=1e-2) and table.descriptors[n].dtype == np.float32
        assert np.array_equal(table.point_rows[n], r)
    with pytest.raises(MapError, match="no image zz"):
        table.descriptors["zz"]
    with pytest.raises(MapError, match="expected 3"):
        write_image_table(tmp_path, names, sizes, 8, zip(desc, rows[:2] + [np.zeros(2)]))
    write_image_table(tmp_path, names, sizes, 8, zip(desc, rows))
    path = tmp_path / DESCRIPTORS
    path.write_bytes(path.read_bytes()[:-20])                       # truncated
    with pytest.raises(MapError, match="cannot read the image table"):
        ImageTable.load(tmp_path)
    np.save(path, np.zeros((4, 8), np.float16))                     # a row short
    with pytest.raises(MapError, match="corrupt image table"):
        ImageTable.load(tmp_path)


def test_evaluating_a_map_of_another_scene_warns(room, retrieval_map, tmp_path):
    """The map's manifest names its scene; a map of another one is most likely a mistake."""
    import shutil
    from vloc.evaluation.run import evaluate
    other = tmp_path / "other"
    shutil.copytree(retrieval_map, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["source"]["scene"] = "another_room"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="built from scene 'another_room'; these queries are of"):
        evaluate(room, "official", "retrieval-top1", map_dir=other, progress=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # its own map: no warning
        evaluate(room, "official", "retrieval-top1", map_dir=retrieval_map, progress=False)
