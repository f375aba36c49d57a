"""Line clouds (lifting, storage without points) and the attack that recovers the
points, on synthetic clouds with known truth (no images: fast)."""
import h5py
import numpy as np
import pytest

from vloc.lines.attack import AttackConfig, extent, point_errors, recover_points, recovery
from vloc.lines.cloud import lift_points, line_cloud_from_points, point_line_distance, read_lines
from vloc.lines.mapping import LineMapConfig, convert_structure_map
from vloc.lines.privacy import leaked_points
from vloc.maps.config import MapConfig
from vloc.maps.mapdir import atomic_map_dir, write_manifest
from vloc.maps.points import MapPoints, write_points


def surfaces(n: int, seed: int = 0, wall: float = 0.45) -> np.ndarray:
    """n points on a floor (4 x 3 m) and, a share `wall` of them, on a wall (4 x 2.5 m)."""
    rng = np.random.default_rng(seed)
    p = rng.random((n, 3)) * [4.0, 3.0, 2.5]
    wall = rng.random(n) < wall
    p[~wall, 2] = 0.0
    p[wall, 1] = 3.0
    return p


@pytest.mark.parametrize("lifting", ["random", "paired"])
def test_lifting_keeps_every_point_on_its_line(lifting):
    xyz = surfaces(1001, seed=1) + [100.0, -50.0, 3.0]          # far from the origin on purpose
    anchors, dirs, truth = lift_points(xyz, lifting, seed=3)
    assert np.allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-12)
    assert np.abs(np.sum(anchors * dirs, axis=1)).max() < 1e-9        # anchor: closest to the origin
    for c in range(1 + (lifting == "paired")):
        ok = truth[:, c] >= 0
        d = point_line_distance(xyz[truth[ok, c]], anchors[ok], dirs[ok])
        assert d.max() < 1e-9
    covered = np.sort(truth[truth >= 0])
    assert np.array_equal(covered, np.arange(len(xyz)))                # every point on exactly one line
    if lifting == "random":
        assert len(anchors) == 1001 and np.all(truth[:, 1] == -1)
        # uniform on the sphere: mean ~ 0, second moment ~ I/3
        assert np.abs(dirs.mean(0)).max() < 0.06
        assert np.abs(dirs.T @ dirs / len(dirs) - np.eye(3) / 3).max() < 0.04
    else:
        assert len(anchors) == 501 and (truth[:, 1] >= 0).sum() == 500
    # no anchor is an original point
    gap = np.linalg.norm(anchors[:, None, :] - xyz[None], axis=2).min()
    assert gap > 1e-3


def _structure_map(path, xyz, desc, desc_point):
    with atomic_map_dir(path) as tmp:
        write_points(tmp / "points.h5", MapPoints(xyz, np.arange(len(xyz)), np.full(len(xyz), 2), desc, desc_point))
        write_manifest(tmp, "structure", {"map": MapConfig().to_dict(), "extractor": {"name": "sift"}},
                       {"frames": ["a", "b"]}, {"images": 2})


def test_the_stored_map_holds_no_point_and_descriptors_stay_with_their_lines(tmp_path):
    rng = np.random.default_rng(0)
    xyz = surfaces(600, seed=2)
    desc_point = np.repeat(np.arange(600), 2).astype(np.int32)            # two observations per point
    desc = rng.standard_normal((1200, 16)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    _structure_map(tmp_path / "s", xyz, desc, desc_point)
    manifest = convert_structure_map(tmp_path / "s", tmp_path / "l", LineMapConfig(seed=5))
    assert manifest["method"] == "lines" and manifest["stats"]["lines"] == 600
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["lines.h5", "manifest.json"]
    with h5py.File(tmp_path / "l" / "lines.h5") as f:
        assert sorted(f.keys()) == ["anchors", "desc_line", "descriptors", "directions"]
    leak = leaked_points(tmp_path / "l", xyz)
    assert leak["arrays"] == 2 and leak["values_checked"] == 1200 and leak["matches"] == 0 and not leak["model"]
    # the check does find points when a map does store them
    assert leaked_points(tmp_path / "s", xyz)["matches"] >= 600
    cloud = read_lines(tmp_path / "l" / "lines.h5")
    assert len(cloud.descriptors) == 1200
    # each descriptor's line passes through the point that descriptor described
    stored = cloud.descriptors.astype(np.float32)
    row = np.argmax(stored @ desc.T, axis=1)                            # fp16 -> its original row
    assert np.all(np.max(stored @ desc.T, axis=1) > 0.999)
    d = point_line_distance(xyz[desc_point[row]], cloud.anchors[cloud.desc_line], cloud.directions[cloud.desc_line])
    assert d.max() < 1e-9


def test_sparsified_cloud_keeps_the_share_of_points():
    xyz = surfaces(1000)
    desc_point = np.arange(1000)
    desc = np.eye(1000, 8, dtype=np.float32)
    cloud, truth = line_cloud_from_points(xyz, desc, desc_point, keep=0.25, seed=1)
    assert len(cloud) == 250 and len(cloud.descriptors) == 250
    assert len(np.unique(truth[:, 0])) == 250


def test_attack_recovers_a_dense_noise_free_cloud():
    """3000 points on a 4 x 3 m facade (about 6 cm apart), far from the origin (as in
    geo-registered maps), lines without noise: most points come back to within a
    fraction of their spacing; a sparser cloud is safer."""
    xyz = surfaces(3000, seed=4, wall=0.0) + [3.0e4, -2.0e4, 10.0]
    anchors, dirs, truth = lift_points(xyz, "random", seed=0)
    res = recover_points(anchors, dirs, AttackConfig())
    rec = recovery(res.points, truth, xyz, relative=0.01, metric=(0.05,), anchors=anchors)
    assert rec["estimated"] == 1.0 and 4.0 < rec["extent"] < 5.0
    err = point_errors(res.points, truth, xyz)
    assert rec["share_relative"] > 0.72                 # measured 0.77 (within 1 % of the extent, ~4.5 cm)
    assert rec["median_error"] < 0.02                   # measured 1.5 cm
    assert np.percentile(err, 10) < 0.005               # measured 2.5 mm
    assert rec["anchor_baseline"]["share_relative"] < 0.05      # the stored anchors reveal nothing
    # the estimates are on their lines
    est = res.points[:, 0]
    assert point_line_distance(est, anchors, dirs).max() < 1e-9
    # a tenth of the lines: less comes back, less precisely (measured 0.47, median 4.8 cm)
    keep = np.random.default_rng(1).permutation(len(anchors))[:300]
    sparse = recover_points(anchors[keep], dirs[keep], AttackConfig())
    rec10 = recovery(sparse.points, truth[keep], xyz, relative=0.01, scene_extent=rec["extent"])
    assert rec10["share_relative"] < rec["share_relative"] - 0.2
    assert rec10["median_error"] > 2 * rec["median_error"]


def test_attack_fails_gracefully():
    xyz = np.array([[1.0, 2.0, 3.0]])
    anchors, dirs, truth = lift_points(xyz, "random", seed=0)
    res = recover_points(anchors, dirs)
    assert res.points.shape == (1, 1, 3) and np.isnan(res.points).all() and not res.recovered.any()
    rec = recovery(res.points, truth, xyz)
    assert rec["share_relative"] == 0.0 and rec["estimated"] == 0.0 and rec["median_error"] == np.inf
    # two lines: one neighbour each, not enough to agree on a peak
    res2 = recover_points(*lift_points(np.array([[0.0, 0, 0], [1.0, 0, 0]]), "random", 1)[:2])
    assert np.isnan(res2.points).all()
    # no line at all
    assert recover_points(np.zeros((0, 3)), np.zeros((0, 3))).points.shape == (0, 1, 3)
    assert extent(xyz) == 0.0
