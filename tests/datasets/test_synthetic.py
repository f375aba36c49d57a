"""The embedded synthetic scene: exact geometry, determinism, features that localize,
and the round trip through the "synthetic" importer."""
import math

import numpy as np
import poselib
import pytest

from vloc._libs import cv2
from vloc.datasets import load_scene
from vloc.datasets import synthetic as S
from vloc.errors import DataError
from vloc.geometry import Camera, Pose, pose_errors

# a fixed config, so that changing the defaults does not change what is tested
CFG = S.SyntheticConfig(n_mapping=48, n_query=12, seed=0)
TINY = S.SyntheticConfig(name="tiny", width=96, height=72, focal=75.0, n_mapping=4, n_query=2, seed=3)


@pytest.fixture(scope="module")
def room():
    world = S.build_world(CFG)
    mapping, queries = S.scene_poses(CFG, world)
    return world, CFG.camera(), mapping, queries


@pytest.fixture(scope="module")
def views(room):
    """Rendered frames with SIFT features, cached per (role, index)."""
    world, cam, mapping, queries = room
    sift = cv2.SIFT_create()
    cache = {}

    def get(role, i):
        if (role, i) not in cache:
            pose = (mapping if role == "m" else queries)[i]
            rgb, depth = S.render(world, cam, pose)
            kp, des = sift.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
            xy = np.array([k.pt for k in kp], np.float64).reshape(-1, 2) + 0.5   # OpenCV -> vloc pixels
            cache[role, i] = (rgb, depth, xy, des, pose)
        return cache[role, i]
    return get


# --------------------------------------------------------------------------- helpers
def inv_depth_at(depth, xy, max_ratio=1.02):
    """Depth at vloc pixel coordinates by bilinear interpolation of 1/z (exact on
    planes); invalid near depth edges, holes and the image border."""
    inv = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-12), 0.0)
    x, y = xy[:, 0] - 0.5, xy[:, 1] - 0.5
    H, W = depth.shape
    x0 = np.clip(np.floor(x).astype(int), 0, W - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, H - 2)
    fx, fy = x - x0, y - y0
    n = np.stack([inv[y0, x0], inv[y0, x0 + 1], inv[y0 + 1, x0], inv[y0 + 1, x0 + 1]])
    ok = (x >= 0) & (y >= 0) & (x <= W - 1) & (y <= H - 1) & (n > 0).all(0)
    ok &= n.max(0) <= max_ratio * np.maximum(n.min(0), 1e-12)
    iz = n[0] * (1 - fx) * (1 - fy) + n[1] * fx * (1 - fy) + n[2] * (1 - fx) * fy + n[3] * fx * fy
    return np.where(ok, 1.0 / np.maximum(iz, 1e-12), 0.0), ok


def backproject(cam, pose, xy, z):
    return pose.inverse().transform(np.c_[cam.unproject(xy) * z[:, None], z])


def sift_matches(d0, d1, ratio=0.8):
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d0, d1, k=2)
    return np.array([(a.queryIdx, a.trainIdx) for a, b in knn if a.distance < ratio * b.distance]).reshape(-1, 2)


def sampson(x0, x1, cam, p0, p1):
    rel = p1 * p0.inverse()
    t = rel.t
    E = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ rel.R
    Ki = np.linalg.inv(cam.K)
    F = Ki.T @ E @ Ki
    a, b = np.c_[x0, np.ones(len(x0))], np.c_[x1, np.ones(len(x1))]
    Fa, Ftb = a @ F.T, b @ F
    return np.abs(np.sum(b * Fa, 1)) / np.sqrt(Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Ftb[:, 0] ** 2 + Ftb[:, 1] ** 2)


# --------------------------------------------------------------------------- textures
def test_photos_load_offline():
    for name in S.PHOTOS:
        img = S.load_photo(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 100
    with pytest.raises(DataError):
        S.load_photo("eagle")          # part of scikit-image, but needs a download


def test_atlas_mip_levels():
    atlas = S.texture_atlas(("brick", "astronaut"), 64)
    assert atlas.n_levels == 7 and len(atlas.data) == sum(2 * (64 >> k) ** 2 for k in range(7))


# --------------------------------------------------------------------------- exact geometry
def test_fronto_parallel_wall_depth():
    cam = Camera.pinhole(500, 500, 320, 240, 640, 480)
    wall = S.rect((3.0, 0.0, 1.5), (-1, 0, 0), (0, 0, 1), 8.0, 6.0, ("brick",))
    world = S.World((wall,))
    rgb, depth = S.render(world, cam, S.pose_from_view((0.0, 0.0, 1.5), yaw=0.0))
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    assert abs(depth[240, 320] - 3.0) < 1e-3 and np.abs(depth - 3.0).max() < 1e-3
    # in the room: the north wall (y = 4) seen square-on from y = 1, above the boxes
    room = S.room_world((10.0, 8.0, 3.0))
    assert room.is_free([1.5, 1.0, 1.5], margin=0.3)[0]
    _, depth = S.render(room, cam, S.pose_from_view((1.5, 1.0, 1.5), yaw=math.pi / 2))
    assert np.abs(depth[239:241, 319:321] - 3.0).max() < 1e-3


def test_pixel_centre_convention():
    """A quad's edge lands exactly where the pinhole projection puts it."""
    cam = Camera.pinhole(100, 100, 40, 30, 80, 60)
    # a quad covering x >= 0.5 at distance 2 (edge at u = cx + 100 * 0.5 / 2 = 65)
    quad = S.rect((0.5 + 2.0, 0.0, 0.0), (0, 0, -1), (0, -1, 0), 4.0, 4.0, ("gravel",))
    world = S.World((quad,))
    depth, qid = S.raycast(world, cam, Pose(np.eye(3), [0.0, 0.0, 2.0]))
    cols = np.flatnonzero(qid[30] >= 0)
    assert cols.min() == 65 and cols.max() == 79          # pixel 65 has its centre at u = 65.5
    assert np.allclose(depth[qid >= 0], 2.0)


def test_depth_and_poses_are_consistent(room):
    """Points lifted from one frame's depth land on the surface seen by another frame
    (where not occluded there), and no frame sees through a surface."""
    world, cam, mapping, queries = room
    cam = cam.scaled(0.5)
    rng = np.random.default_rng(0)
    for a, b in [(mapping[3], mapping[4]), (mapping[25], queries[0]), (mapping[30], mapping[33])]:
        _, da = S.render(world, cam, a)
        _, db = S.render(world, cam, b)
        xy = rng.uniform([0, 0], [cam.width, cam.height], size=(3000, 2))
        z, ok = inv_depth_at(da, xy)
        X = backproject(cam, a, xy[ok], z[ok])
        Xb = b.transform(X)
        front = Xb[:, 2] > 0.1
        uv = cam.project(Xb[front])
        zb, okb = inv_depth_at(db, uv)
        diff = zb[okb] - Xb[front][okb, 2]          # < 0 where occluded in b
        assert okb.sum() > 500
        assert np.median(np.abs(diff)) < 0.01 and np.mean(np.abs(diff) < 0.001) > 0.6
        assert np.mean(diff > 0.01) < 0.01          # seeing through a surface


def test_quad_corners_project_onto_depth(room):
    """Visible quad corners: the rendered depth next to each corner's projection is
    the corner's z (the quad is the nearest surface there)."""
    world, cam, mapping, _ = room
    pose = mapping[24]
    depth, qid = S.raycast(world, cam, pose)
    checked = 0
    for k, quad in enumerate(world.quads):
        centre = quad.corners().mean(0)
        for c in quad.corners():
            p = c + 0.02 * (centre - c) / np.linalg.norm(centre - c)   # 2 cm inside the quad
            pc = pose.transform(p[None])[0]
            if pc[2] < 0.2:
                continue
            u, v = cam.project(pc[None])[0]
            i, j = int(v), int(u)
            if not (0 <= i < cam.height and 0 <= j < cam.width) or qid[i, j] != k:
                continue
            assert abs(depth[i, j] - pc[2]) < 0.01 * pc[2]
            checked += 1
    assert checked >= 4


def test_distorted_camera_matches_pinhole(room):
    world, _, mapping, _ = room
    pin = Camera.pinhole(60, 60, 40, 30, 80, 60)
    dist = Camera("OPENCV", 80, 60, (60, 60, 40, 30, -0.2, 0.05, 0.001, 0.0))
    _, dp = S.render(world, pin, mapping[5])
    rgb, dd = S.render(world, dist, mapping[5])
    assert rgb.shape == (60, 80, 3)
    jj, ii = np.meshgrid(np.arange(80) + 0.5, np.arange(60) + 0.5)
    xy = np.c_[jj.ravel(), ii.ravel()]
    X = backproject(dist, mapping[5], xy, dd.ravel().astype(np.float64))
    Xc = mapping[5].transform(X)
    uv = pin.project(Xc)
    zp, ok = inv_depth_at(dp, uv)
    assert ok.sum() > 1000 and np.median(np.abs(zp[ok] - Xc[ok, 2])) < 0.01


def test_view_conventions():
    pose = S.pose_from_view((1.0, 2.0, 1.5), yaw=math.pi / 2)      # looking along +y, z up
    cam = Camera.pinhole(100, 100, 50, 40, 100, 80)
    ahead, above, right = pose.transform(np.array([[1, 5, 1.5], [1, 5, 2.5], [2, 5, 1.5]]))
    assert np.allclose(cam.project(ahead[None]), [[50, 40]])
    assert cam.project(above[None])[0, 1] < 40 and cam.project(right[None])[0, 0] > 50
    look = S.look_at((1.0, 2.0, 1.5), (1.0, 5.0, 1.5))
    assert np.allclose(look.matrix(), pose.matrix())


def test_supersampling_keeps_depth(room):
    world, cam, mapping, _ = room
    cam = cam.scaled(0.25)
    rgb1, d1 = S.render(world, cam, mapping[10])
    rgb2, d2 = S.render(world, cam, mapping[10], supersample=2)
    assert np.array_equal(d1, d2)
    assert np.mean(np.abs(rgb1.astype(float) - rgb2)) < 20


# --------------------------------------------------------------------------- trajectories
def test_trajectories_in_free_space(room):
    world, _, mapping, queries = room
    assert len(mapping) == 48 and len(queries) == 12
    centres = np.array([p.center for p in mapping + queries])
    assert world.is_free(centres, margin=0.2).all()
    steps = np.linalg.norm(np.diff(np.array([p.center for p in mapping]), axis=0), axis=1)
    assert steps.max() < 1.5                                    # a smooth path
    assert np.ptp(centres[:, 2]) > 0.3                          # varied heights
    for q in queries:                                           # near the mapping path
        d = min(np.linalg.norm(q.center - p.center) for p in mapping)
        assert d < 1.2


# --------------------------------------------------------------------------- features
def test_sift_keypoints(views):
    for i in (0, 16, 32):
        assert len(views("m", i)[2]) > 500


def test_sift_epipolar_consistency(room, views):
    _, cam, mapping, _ = room
    for i in (0, 30):
        _, _, x0, d0, p0 = views("m", i)
        _, _, x1, d1, p1 = views("m", i + 1)
        m = sift_matches(d0, d1)
        assert len(m) > 200
        err = sampson(x0[m[:, 0]], x1[m[:, 1]], cam, p0, p1)
        assert np.median(err) < 0.5


def test_depth_lifted_sift_localizes_queries(room, views):
    """Reference keypoints lifted with rendered depth + PnP give the query's GT pose."""
    _, cam, mapping, queries = room
    for j in (0, 1, 2):
        q = queries[j]
        ref = int(np.argmin([np.linalg.norm(p.center - q.center)
                             + 0.02 * math.degrees(math.acos(np.clip((np.trace(p.R @ q.R.T) - 1) / 2, -1, 1)))
                             for p in mapping]))
        _, dref, x0, d0, p0 = views("m", ref)
        _, _, x1, d1, _ = views("q", j)
        m = sift_matches(d0, d1)
        z, ok = inv_depth_at(dref, x0[m[:, 0]])
        X = backproject(cam, p0, x0[m[:, 0]][ok], z[ok])
        est, info = poselib.estimate_absolute_pose(x1[m[:, 1]][ok], X, cam.to_poselib(),
                                                   {"max_reproj_error": 3.0}, {})
        assert info["num_inliers"] > 100
        t_err, r_err = pose_errors(Pose(est.R, est.t), q)
        assert t_err < 0.02 and r_err < 0.5, (j, ref, t_err, r_err)


# --------------------------------------------------------------------------- scenes on disk
def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_is_deterministic(tmp_path):
    a = S.generate_scene(tmp_path / "a", TINY)
    b = S.generate_scene(tmp_path / "b", TINY)
    fa, fb = _files(a.root), _files(b.root)
    assert sorted(fa) == sorted(fb) and all(fa[k] == fb[k] for k in fa)
    assert len([k for k in fa if k.endswith(".png")]) == 2 * (TINY.n_mapping + TINY.n_query)
    other = S.generate_scene(tmp_path / "c", S.SyntheticConfig(**{**TINY.to_dict(), "seed": 4}))
    assert not np.allclose(other.frames[0].cam_from_world.matrix(), a.frames[0].cam_from_world.matrix())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]       # no temporary leftovers


def test_generate_existing_folder(tmp_path):
    out = tmp_path / "scene"
    S.generate_scene(out, TINY)
    stamp = (out / S.MANIFEST).stat().st_mtime_ns
    assert len(S.generate_scene(out, TINY)) == 6 and (out / S.MANIFEST).stat().st_mtime_ns == stamp
    other = S.SyntheticConfig(**{**TINY.to_dict(), "n_query": 1})
    with pytest.raises(DataError):
        S.generate_scene(out, other)
    assert len(S.generate_scene(out, other, overwrite=True)) == 5
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(DataError):
        S.generate_scene(tmp_path / "junk", TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk", "scene"]


def test_importer_round_trip(tmp_path):
    scene = S.generate_scene(tmp_path / "s", TINY)
    loaded = load_scene(tmp_path / "s")
    assert loaded.format == "synthetic" and loaded.metric
    mapping, queries = S.scene_poses(TINY)
    assert [f.name for f in loaded.frames] == [f.name for f in scene.frames]
    assert loaded.cameras == [TINY.camera()]
    for f, pose in zip(loaded.frames, mapping + queries):
        assert np.array_equal(f.cam_from_world.R, pose.R) and np.array_equal(f.cam_from_world.t, pose.t)
        assert f.depth_scale == 0.001 and f.depth_registered and f.image_path.is_file()
    fold = loaded.split("official")[0]
    assert [f.name for f in fold.mapping] == [f"mapping/{i:04d}.png" for i in range(4)]
    assert [f.name for f in fold.query] == ["query/0000.png", "query/0001.png"]
    # the files hold what render() gives
    world, f = S.build_world(TINY), loaded.frames[1]
    rgb, depth = S.render(world, f.camera, f.cam_from_world)
    img = cv2.cvtColor(cv2.imread(str(f.image_path)), cv2.COLOR_BGR2RGB)
    d16 = cv2.imread(str(f.depth_path), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(img, rgb) and d16.dtype == np.uint16
    assert np.abs(d16 * f.depth_scale - depth).max() <= 0.0005 + 1e-6


def test_importer_rejects_bad_manifest(tmp_path):
    (tmp_path / S.MANIFEST).write_text('{"format": "vloc_synthetic", "version": 1, "frames": [{}]}')
    with pytest.raises(DataError):
        load_scene(tmp_path)
    (tmp_path / S.MANIFEST).write_text("{not json")
    with pytest.raises(DataError):
        load_scene(tmp_path, "synthetic")


def test_config_validation():
    with pytest.raises(DataError):
        S.SyntheticConfig(width=0)
    with pytest.raises(DataError):
        S.SyntheticConfig(world="moon")
    with pytest.raises(DataError):
        S.room_world((3.0, 3.0, 2.0))
    assert S.SyntheticConfig.from_dict(CFG.to_dict()) == CFG
