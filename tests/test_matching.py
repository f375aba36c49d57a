import numpy as np
import pytest

from vloc.datasets import Frame
from vloc.geometry import Camera, Pose
from vloc.maps.pairs import pairs_from_poses, select_pairs
from vloc.matching import match_mutual_ratio, match_mutual_ratio_many
from vloc.matching import nn
from vloc.matching.geometry import epipolar_errors
from vloc.matching.index import build_faiss_index, match_to_points


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_mutual_ratio_finds_the_permutation_and_rejects_ambiguous():
    rng = np.random.default_rng(0)
    a = _unit(rng.normal(size=(400, 128)))
    perm = rng.permutation(400)
    b = _unit(a[perm] + 0.02 * rng.normal(size=(400, 128)))
    m = match_mutual_ratio(a, b, ratio=0.8)
    assert len(m) == 400 and np.all(perm[m[:, 1]] == m[:, 0])
    # a near-duplicate in b makes its match ambiguous: the ratio test drops it
    b2 = np.r_[b, _unit(b[:1] + 1e-4)]
    m2 = match_mutual_ratio(a, b2, ratio=0.8)
    assert perm[0] not in m2[:, 0] and len(m2) == 399


def test_batched_matching_equals_pairwise(monkeypatch):
    rng = np.random.default_rng(2)
    q = _unit(rng.normal(size=(300, 64)))
    # databases sharing some of the query's descriptors (noisy), an empty and a 1-row one
    dbs = [_unit(np.r_[q[rng.choice(300, 120, replace=False)] + 0.05 * rng.normal(size=(120, 64)),
                       rng.normal(size=(n, 64))]) for n in (30, 200, 0, 80)]
    dbs += [np.zeros((0, 64), np.float32), _unit(q[:1] + 0.01)]
    monkeypatch.setattr(nn, "BATCH_MAX_ENTRIES", 300 * 250)        # several batches
    monkeypatch.setattr(nn, "BATCH_PAIR_MAX_ENTRIES", 300 * 300)   # the 320-row one to FAISS
    for mutual in (True, False):
        many = match_mutual_ratio_many(q, dbs, ratio=0.85, mutual=mutual)
        pairwise = [match_mutual_ratio(q, db, ratio=0.85, mutual=mutual) for db in dbs]
        assert [len(m) for m in many] == [len(m) for m in pairwise]
        assert sum(len(m) for m in many) > 300
        for a, b in zip(many, pairwise):
            assert np.array_equal(a[np.argsort(a[:, 0])], b[np.argsort(b[:, 0])])
    assert all(len(m) == 0 for m in match_mutual_ratio_many(q[:0], dbs))


def test_ratio_test_between_distinct_points():
    rng = np.random.default_rng(1)
    pts = _unit(rng.normal(size=(50, 128)))
    # 3 observations per point, all close: they must not reject each other
    desc = _unit(np.repeat(pts, 3, axis=0) + 0.01 * rng.normal(size=(150, 128)))
    owner = np.repeat(np.arange(50), 3).astype(np.int32)
    index = build_faiss_index(desc, "flat")
    q = _unit(pts + 0.01 * rng.normal(size=(50, 128)))
    qi, pi = match_to_points(index, owner, q, ratio=0.8)
    assert len(qi) == 50 and np.all(pi == qi)


def test_ivf_index_matches_flat_on_clustered_data():
    rng = np.random.default_rng(2)
    centers = _unit(rng.normal(size=(2000, 128)))
    desc = _unit(centers[rng.integers(0, 2000, 20000)] + 0.05 * rng.normal(size=(20000, 128)))
    owner = np.arange(20000, dtype=np.int32)
    q = _unit(desc[:500] + 0.01 * rng.normal(size=(500, 128)))
    flat = match_to_points(build_faiss_index(desc, "flat"), owner, q, 1.0)
    ivf = match_to_points(build_faiss_index(desc, "ivf"), owner, q, 1.0)
    assert np.mean(ivf[1] == flat[1]) > 0.95


def test_epipolar_error_is_zero_for_true_correspondences():
    rng = np.random.default_rng(3)
    cam = Camera.from_string("OPENCV 640 480 500 510 320 240 0.05 -0.01 0.001 0.0")
    p0, p1 = Pose.identity(), Pose.from_qt([0.99, 0.05, 0.1, 0.0], [0.5, 0.1, 0.0])
    X = rng.uniform([-2, -2, 4], [2, 2, 8], (100, 3))
    k0, k1 = cam.project(p0.transform(X)), cam.project(p1.transform(X))
    assert np.abs(epipolar_errors(k0, k1, cam, cam, p0, p1)).max() < 1e-6
    assert np.median(epipolar_errors(k0, k1[::-1], cam, cam, p0, p1)) > 5


def test_pairs_from_poses_prefers_near_cameras_looking_the_same_way():
    cam = Camera.from_string("PINHOLE 640 480 500 500 320 240")
    frames = [Frame(f"{i}", cam, cam_from_world=Pose(np.eye(3), [-float(i), 0, 0])) for i in range(6)]
    back = Pose(np.diag([-1.0, 1.0, -1.0]), [0, 0, 0])      # looks the other way
    frames.append(Frame("back", cam, cam_from_world=back))
    pairs = pairs_from_poses(frames, num=2)
    assert (0, 1) in pairs and (2, 3) in pairs and (0, 5) not in pairs
    assert not any(6 in p for p in pairs)
    assert len(select_pairs(frames, "exhaustive", 2, 75)) == 21


def test_frames_without_poses_pair_by_retrieval():
    """60 unposed images of 12 places (5 each; an image's descriptors are its place's
    words plus noise): automatic pairs join images of one place and no others."""
    from vloc.errors import DataError
    rng = np.random.default_rng(0)
    cam = Camera.from_string("PINHOLE 640 480 500 500 320 240")
    words = rng.normal(size=(12, 40, 128)).astype(np.float32)
    frames = [Frame(f"{i}", cam) for i in range(60)]
    descriptors = {f.name: words[i // 5] + 0.3 * rng.normal(size=(40, 128)).astype(np.float32)
                   for i, f in enumerate(frames)}
    pairs = select_pairs(frames, "auto", 4, 75, descriptors)
    assert sorted(pairs) == sorted((i, j) for i in range(60) for j in range(i + 1, 60) if i // 5 == j // 5)
    with pytest.raises(DataError, match="needs a pose"):
        select_pairs(frames, "poses", 4, 75, descriptors)


def test_map_pairs_use_the_features_tuned_ratio():
    from vloc.errors import VlocError
    from vloc.maps.config import MapConfig
    from vloc.matching.ratios import TUNED_RATIOS
    assert MapConfig().pair_ratio == 0.8                                   # SIFT family
    assert MapConfig(features="aliked").pair_ratio == TUNED_RATIOS["aliked"] == 0.9
    assert MapConfig(features="disk").pair_ratio == 1.0
    assert MapConfig(features="xfeat").pair_ratio == 0.9
    assert MapConfig(features="aliked", ratio=0.7).pair_ratio == 0.7        # an explicit ratio wins
    with pytest.raises(VlocError, match="ratio must be in"):
        MapConfig(ratio=1.5)
