"""Image-based global descriptors: ALIKED dense maps, GeM and NetVLAD pooling,
whitening, the projection head, save/load, and retrieval / a retrieval map on the
synthetic room. Small images keep the network fast."""
import json
import math

import numpy as np
import pytest

import vloc
from vloc.errors import MapError, VlocError
from vloc.geometry import Pose
from vloc.imageio import read_image
from vloc.retrieval import DenseGlobal, load_global, make_global
from vloc.retrieval.dense import dense_features
from vloc.retrieval.head import HeadConfig, apply_head, load_head, pose_positives, save_head, train_head
from vloc.retrieval.pooling import Whitening, assignment_sharpness, gem, netvlad, soft_assign

from .test_global_descriptors import neighbour_ranks

SIZE = 256          # network input (longer side) in these tests


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):      # see tests/conftest.py (this network: 2.5-4x slower on 2)
    yield


@pytest.fixture(scope="module")
def room_grids(synthetic_room):
    """Dense maps (at SIZE) of every frame of the synthetic room, by name."""
    scene, mapping, query = synthetic_room
    return {n: dense_features(read_image(scene.frame(n).image_path, max_size=SIZE)[0], image_size=SIZE)
            for n in [*mapping, *query]}


def unit_rows(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- dense maps
def test_dense_map_shape_norm_determinism(synthetic_room):
    scene, mapping, _ = synthetic_room
    img = read_image(scene.frame(mapping[0]).image_path)[0]          # 640x480 RGB
    g = dense_features(img, image_size=128)                         # 128x96 -> cells of 8 px
    assert g.shape == (12, 16, 128) and g.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(g, axis=2), 1, atol=1e-5)
    np.testing.assert_array_equal(dense_features(img, image_size=128), g)
    gray = dense_features(img.mean(axis=2).astype(np.uint8), image_size=128)
    assert gray.shape == g.shape
    assert dense_features(img, image_size=128, cell=4).shape == (24, 32, 128)
    for bad in (np.zeros((4, 4, 2), np.uint8), np.full((40, 40), 2.0), np.zeros((40, 40), np.int32)):
        with pytest.raises(VlocError, match="image"):
            dense_features(bad, image_size=64)


def test_rotate180_makes_the_vector_invariant_to_an_upside_down_camera(synthetic_room):
    scene, mapping, _ = synthetic_room
    img = read_image(scene.frame(mapping[3]).image_path)[0]
    turned = np.ascontiguousarray(img[::-1, ::-1])
    enc = make_global("aliked-gem", image_size=128, rotate180=True)
    assert enc.dense(img).shape == (24, 16, 128)
    np.testing.assert_allclose(enc.encode_image(turned), enc.encode_image(img), atol=1e-5)
    upright = make_global("aliked-gem", image_size=128)
    assert np.abs(upright.encode_image(turned) - upright.encode_image(img)).max() > 1e-3


# --------------------------------------------------------------------------- pooling
def test_gem_of_a_constant_map():
    v = np.linspace(-0.5, 0.5, 8)
    x = np.tile(v, (30, 1))
    for p in (1.0, 3.0, 7.0):                                        # any mean of a constant is the constant
        np.testing.assert_allclose(gem(x, p), np.r_[np.maximum(v, 1e-6), np.maximum(-v, 1e-6)], rtol=1e-9)
    enc = make_global("aliked-gem")
    grid = np.tile(unit_rows(np.arange(1.0, 129.0) - 64.5), (3, 5, 1))
    pooled = enc.encode_dense(grid)
    ref = np.r_[np.maximum(grid[0, 0], 1e-6), np.maximum(-grid[0, 0], 1e-6)]
    np.testing.assert_allclose(pooled, ref / np.linalg.norm(ref), atol=1e-6)
    assert enc.dim == 256
    # p = 1 is the mean of the positive parts
    x = np.array([[1.0, -2.0], [3.0, 2.0]])
    np.testing.assert_allclose(gem(x, 1.0, eps=0)[:2], [2.0, 1.0])


def test_netvlad_assignment_on_hand_made_features():
    c = np.array([[1.0, 0.0], [0.0, 1.0]])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    alpha = 2.0
    a = soft_assign(x, c, alpha)
    # x0: squared distances (0, 2) -> weights ∝ (1, e^-4)
    np.testing.assert_allclose(a[0], [1 / (1 + math.exp(-4)), math.exp(-4) / (1 + math.exp(-4))])
    np.testing.assert_allclose(a[1], a[0][::-1])
    d2 = ((x[2] - c) ** 2).sum(1)                                      # (0.8, 0.4): nearer to c1
    np.testing.assert_allclose(a[2], np.exp(-alpha * d2) / np.exp(-alpha * d2).sum())
    np.testing.assert_allclose(a.sum(1), 1)
    v = netvlad(x, c, alpha)
    np.testing.assert_allclose(v, [(a[:, k:k + 1] * (x - c[k])).sum(0) for k in range(2)], atol=1e-12)
    # very sharp: hard assignment, residuals of x0 and x1 vanish, x2's goes to word 1
    np.testing.assert_allclose(netvlad(x, c, 200.0), [[0, 0], [0.6, -0.2]], atol=1e-9)
    # the sharpness makes the mean squared-distance gap a 100:1 weight ratio
    alpha = assignment_sharpness(x[:2], c)
    assert alpha == pytest.approx(math.log(100) / 2)
    w = soft_assign(x[:1], c, alpha)[0]
    assert w[0] / w[1] == pytest.approx(100)


def test_whitening():
    rng = np.random.default_rng(0)
    v = unit_rows(rng.standard_normal((20, 16)) * np.linspace(3, 0.1, 16))
    w = Whitening.fit(v, 8)
    assert w.dim == 8
    out = w(v)
    assert out.shape == (20, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert Whitening.fit(v[:5], 64).dim == 4                        # at most n - 1 directions
    with pytest.raises(VlocError, match="at least 3"):
        Whitening.fit(v[:2], 4)


# --------------------------------------------------------------------------- head
def _cluster_views(seed=0, n=12, views=4, dim=32):
    """n images in 4 places (3 images each); views are noisy copies."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, dim))
    base = centres[np.arange(n) % 4] + 0.8 * rng.standard_normal((n, dim))
    v = unit_rows(base[:, None] + 0.3 * rng.standard_normal((n, views, dim))).astype(np.float32)
    positives = [np.array([j for j in range(n) if j != i and j % 4 == i % 4]) for i in range(n)]
    return v, positives


def test_head_training_lowers_its_loss_and_round_trips(tmp_path):
    views, positives = _cluster_views()
    cfg = HeadConfig(hidden=32, epochs=40, batch=12, seed=3)
    r = train_head(views, positives, cfg)
    assert r.final_loss < 0.7 * r.initial_loss
    assert len(r.epoch_losses) == 40
    again = train_head(views, positives, cfg)                          # seeded: same head
    np.testing.assert_array_equal(apply_head(again.head, views[:, 0]), apply_head(r.head, views[:, 0]))
    untrained = train_head(views, positives, HeadConfig(hidden=32, epochs=0))
    np.testing.assert_allclose(apply_head(untrained.head, views[:, 0]), views[:, 0], atol=1e-6)   # identity at start
    save_head(r.head, tmp_path / "h.pt")
    back = load_head(tmp_path / "h.pt", 32)
    np.testing.assert_array_equal(apply_head(back, views[:, 1]), apply_head(r.head, views[:, 1]))
    with pytest.raises(MapError, match="does not fit 16"):
        load_head(tmp_path / "h.pt", 16)
    data = (tmp_path / "h.pt").read_bytes()
    (tmp_path / "bad.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(MapError, match="cannot read"):
        load_head(tmp_path / "bad.pt", 32)
    with pytest.raises(VlocError, match="positive indices"):
        train_head(views, [np.array([99])] * len(views), cfg)


def test_pose_positives():
    def pose(x, yaw_deg):
        y = math.radians(yaw_deg)     # rotation about the world y axis; optical axis = R[2]
        R = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
        return Pose(R, -R @ np.array([x, 0.0, 0.0]))
    poses = [pose(0, 0), pose(1, 10), pose(2, 0), pose(3, 90), pose(10, 0)]
    pos = pose_positives(poses, max_angle=30, radius=1.5)
    assert [p.tolist() for p in pos] == [[1], [0, 2], [1], [], []]    # 3: turned away; 4: far
    assert [p.tolist() for p in pose_positives(poses, max_angle=100, radius=1.5)][3] == [2]


# --------------------------------------------------------------------------- the descriptors
def test_fit_save_load_round_trip(room_grids, synthetic_room, tmp_path):
    scene, mapping, query = synthetic_room
    grids = [room_grids[n] for n in mapping]
    poses = [scene.frame(n).cam_from_world for n in mapping]
    enc = make_global("aliked-netvlad", k=8, whiten=6, head=True, head_epochs=5, image_size=SIZE).fit_dense(grids,
                                                                                                        poses)
    assert isinstance(enc, DenseGlobal) and enc.name == "aliked-netvlad" and enc.dim == 6
    assert enc.head_training.final_loss < enc.head_training.initial_loss
    enc.save(tmp_path / "g.h5")
    assert (tmp_path / "g.h5.head.pt").is_file()
    back = load_global(tmp_path / "g.h5")
    assert back.config == enc.config
    for n in query[:2]:
        np.testing.assert_array_equal(back.encode_dense(room_grids[n]), enc.encode_dense(room_grids[n]))
    # errors
    with pytest.raises(VlocError, match="needs one camera pose"):
        make_global("aliked-gem", head=True).fit_dense(grids)
    with pytest.raises(VlocError, match="not fitted"):
        make_global("aliked-netvlad").encode_dense(grids[0])
    with pytest.raises(VlocError, match=r"must be \(h, w, 128\)"):
        make_global("aliked-gem").encode_dense(grids[0][..., :64])
    with pytest.raises(VlocError, match="unknown aliked-gem options q"):
        make_global("aliked-gem", q=2)
    with pytest.raises(VlocError, match="unknown ALIKED model"):
        make_global("aliked-gem", model="aliked-x")
    (tmp_path / "g.h5.head.pt").unlink()
    with pytest.raises(MapError, match="head file not found"):
        load_global(tmp_path / "g.h5")


@pytest.mark.parametrize("name, options", [("aliked-gem", {}), ("aliked-netvlad", {"k": 16})])
def test_retrieval_on_synthetic_room(room_grids, synthetic_room, name, options):
    scene, mapping, query = synthetic_room
    enc = make_global(name, image_size=SIZE, **options).fit_dense([room_grids[n] for n in mapping])
    db = np.stack([enc.encode_dense(room_grids[n]) for n in mapping])
    q = np.stack([enc.encode_dense(room_grids[n]) for n in query])
    np.testing.assert_allclose(np.linalg.norm(db, axis=1), 1, atol=1e-5)
    ranks = neighbour_ranks(scene, mapping, query, db, q)
    print(f"\n{name}: ranks of the expected neighbour {ranks}")
    assert sum(r < 5 for r in ranks) >= 5                              # of 6


def test_retrieval_map_with_an_image_descriptor(synthetic_room, tmp_path):
    from vloc.localizers import Query
    from vloc.localizers.retrieval import RetrievalMapConfig
    scene, mapping, query = synthetic_room
    frames = [scene.frame(n) for n in mapping[:8]]
    cfg = RetrievalMapConfig(global_descriptor="aliked-gem", image_size=128, head=True)
    manifest = vloc.build_map(frames, tmp_path / "m", cfg, method="retrieval-top1", progress=False)
    assert manifest["config"]["map"]["global_descriptor"] == "aliked-gem"
    assert manifest["stats"]["dims"] == 256 and "head" in manifest["stats"]
    assert "global_descriptor.h5.head.pt" in manifest["files"]
    loc = vloc.load_localizer(tmp_path / "m")
    q = scene.frame(query[0])
    est = loc.localize(Query(q.name, image_path=q.image_path, camera=q.camera))
    assert est.success and set(est.timings) >= {"read", "features", "retrieval"}
    # pixels instead of a path give the same vector
    img = read_image(q.image_path)[0]
    np.testing.assert_array_equal(loc.query_vector(Query(q.name, image=img))[0],
                                  loc.query_vector(Query(q.name, image_path=q.image_path))[0])
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]["extractor"]["name"] == "aliked-dense"
    with pytest.raises(VlocError, match="apply to aliked-gem and aliked-netvlad only"):
        RetrievalMapConfig(global_descriptor="vlad", head=True)
    with pytest.raises(VlocError, match="unknown global_descriptor 'gem'"):
        RetrievalMapConfig(global_descriptor="gem")
    with pytest.raises(VlocError, match="image_size"):
        RetrievalMapConfig(global_descriptor="aliked-gem", image_size=8)
