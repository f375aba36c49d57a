"""Known-pose maps triangulated block by block (maps/blocked.py): the split, the merge
of points shared across block borders, and a blocked map of the synthetic room against
the one-block map of the same frames."""
import numpy as np
import pytest

import vloc
from vloc.geometry import Camera, Pose, pose_errors
from vloc.localizers import Query
from vloc.maps.blocked import Observations, merge_shared_points, split_blocks
from vloc.maps.config import MapConfig
from vloc.maps.points import read_points


def test_split_blocks_halves_the_widest_axis_until_small():
    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 1, size=(1000, 3)) * [100.0, 10.0, 1.0]
    blocks = split_blocks(centers, 300)
    assert [len(b) for b in blocks] == [250] * 4
    assert np.array_equal(np.sort(np.concatenate(blocks)), np.arange(1000))
    # split along x only (the widest axis): blocks are x slabs
    xs = sorted((centers[b, 0].min(), centers[b, 0].max()) for b in blocks)
    assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(xs, xs[1:]))
    assert split_blocks(centers, 1000)[0].tolist() == list(range(1000))


class _Frame:
    def __init__(self, pose):
        self.camera = Camera.pinhole(100.0, 100.0, 50.0, 50.0, 100, 100)
        self.cam_from_world = pose


def _toy(shift_second: float):
    """Three cameras looking at X = (0, 0, 5); block A triangulated it from cameras 0, 1,
    block B from cameras 1, 2 (sharing camera 1's keypoint 0), B's copy shifted in x."""
    frames = [_Frame(Pose(np.eye(3), np.array([-x, 0.0, 0.0]))) for x in (-1.0, 0.0, 1.0)]
    X = np.array([0.0, 0.0, 5.0])
    kps = {i: np.array([f.camera.project((f.cam_from_world.R @ X + f.cam_from_world.t)[None])[0],
                        [10.0, 10.0]]) for i, f in enumerate(frames)}
    a = Observations(X[None], np.array([0, 0]), np.array([0, 1]), np.array([0, 0]))
    b = Observations((X + [shift_second, 0, 0])[None], np.array([0, 0]), np.array([1, 2]), np.array([0, 0]))
    c = Observations(np.array([[5.0, 5.0, 5.0]]), np.array([0, 0]), np.array([0, 2]), np.array([1, 1]))
    return frames, kps, Observations.concat([a, b, c])


def test_points_sharing_an_observation_are_merged():
    frames, kps, obs = _toy(0.01)                 # 0.2 px apart: one point
    out, counts = merge_shared_points(obs, frames, kps.__getitem__)
    assert counts == {"points_merged": 1, "merge_conflicts": 0}
    assert len(out.xyz) == 2
    assert np.allclose(out.xyz[0], [0.005, 0, 5])
    rows = out.obs_point == 0
    assert sorted(zip(out.obs_image[rows], out.obs_kp[rows])) == [(0, 0), (1, 0), (2, 0)]   # camera 1 once
    assert np.allclose(out.xyz[1], [5, 5, 5]) and (out.obs_point == 1).sum() == 2


def test_inconsistent_shared_points_keep_the_longest_only():
    frames, kps, obs = _toy(1.0)                  # 20 px apart: not one point
    out, counts = merge_shared_points(obs, frames, kps.__getitem__)
    assert counts == {"points_merged": 0, "merge_conflicts": 1}
    assert len(out.xyz) == 2 and np.allclose(out.xyz[0], [0, 0, 5])
    assert len(out.obs_point) == 4 and len(np.unique(np.stack([out.obs_image, out.obs_kp]), axis=1)[0]) == 4


@pytest.fixture(scope="module")
def maps(room, tmp_path_factory):
    fold = room.split("official")[0]
    root = tmp_path_factory.mktemp("blocked")
    one = vloc.build_map(list(fold.mapping), root / "one", MapConfig(points="triangulate"), progress=False)
    blocked = vloc.build_map(list(fold.mapping), root / "blocked",
                             MapConfig(points="triangulate", block_images=8), progress=False)
    return fold, root, one, blocked


def test_blocked_map_matches_the_one_block_map(maps):
    fold, root, one, blocked = maps
    st, st1 = blocked["stats"], one["stats"]
    assert st["blocks"] == 4 and st["largest_block"] <= 8 and st["images"] == 24
    assert st["points_merged"] > 0
    assert abs(st["points"] - st1["points"]) < 0.1 * st1["points"]
    assert st["mean_reprojection_error"] < 1.0
    pts = read_points(root / "blocked" / "points.h5")
    assert len(pts) == st["points"] and np.array_equal(np.bincount(pts.desc_point), pts.track_length)
    # the model and points.h5 agree: a row's descriptors are its observations' descriptors
    from vloc.features.store import read_features
    from vloc.localizers.hierarchical import image_points_from_model
    feats = read_features(root / "blocked" / "features.h5")
    rows = image_points_from_model(root / "blocked" / "model")
    name = fold.mapping[5].name
    kp = np.nonzero(rows[name] >= 0)[0][0]
    owned = pts.descriptors[pts.desc_point == rows[name][kp]]
    assert np.abs(owned - feats[name].descriptors[kp].astype(np.float16)).sum(axis=1).min() < 1e-3


def test_blocked_map_localizes_to_millimetres(maps):
    fold, root, _, _ = maps
    loc = vloc.load_localizer(root / "blocked")
    errs = []
    for f in fold.query:
        est = loc.localize(Query(f.name, image_path=f.image_path, camera=f.camera))
        if est.success:
            errs.append(pose_errors(est.cam_from_world, f.cam_from_world))
    errs = np.array(errs)
    assert len(errs) >= 5
    assert np.median(errs[:, 0]) < 0.005 and errs[:, 0].max() < 0.05
