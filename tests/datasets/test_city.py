"""The synthetic city: street grid, street-level poses, culled rendering that equals
the full ray cast, and restartable generation in the synthetic scene format."""
import json

import numpy as np
import pytest

from vloc._libs import cv2
from vloc.datasets import Scene
from vloc.datasets import synthetic as S
from vloc.datasets.synthetic import city_scene
from vloc.errors import DataError
from vloc.geometry import Camera

CAM = Camera.pinhole(125.0, 125.0, 80.0, 60.0, 160, 120)
TINY = S.CityConfig(name="tiny_city", size_m=300.0, n_mapping=12, n_query=3, width=96, height=72,
                    focal=75.0, seed=5)


@pytest.fixture(scope="module")
def city():
    return S.city_world(1000.0, seed=0)


@pytest.fixture(scope="module")
def small():
    return S.city_world(300.0, seed=3)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the world
def test_city_covers_a_square_kilometre(city):
    lo, hi = np.array(city.free_min[:2]), np.array(city.free_max[:2])
    assert (hi - lo).min() >= 1000.0 and city.kind == "city"
    assert len(city.obstacles) > 500 and len(city.streets) >= 20
    assert len(city.facade) == len(city.quads) and sum(city.facade) == 4 * len(city.obstacles)
    for st in city.streets:                                   # streets span the whole grid
        assert 14.0 <= st.width <= 22.0 and st.length >= 1000.0
    # buildings stay off the streets
    centres = np.array([b.center for b in city.obstacles])
    assert not city.on_street(centres).any()
    # facades differ from building to building
    looks = {(q.textures, q.texel, q.tint) for q, f in zip(city.quads, city.facade) if f}
    assert len(looks) == len(city.obstacles)


def test_city_is_seeded(small):
    again = S.city_world(300.0, seed=3)
    assert again.quads == small.quads and again.streets == small.streets
    assert S.city_world(300.0, seed=4).quads != small.quads
    with pytest.raises(DataError):
        S.city_world(50.0)
    with pytest.raises(DataError):
        S.city_mapping_poses(S.room_world(), 3)


# --------------------------------------------------------------------------- poses
def test_mapping_poses_along_all_streets(city):
    poses = S.city_mapping_poses(city, 400, seed=1)
    assert len(poses) == 400
    c = np.array([p.center for p in poses])
    assert city.on_street(c, margin=1.0).all() and city.is_free(c, margin=1.0).all()
    assert ((c[:, 2] >= 1.5) & (c[:, 2] <= 2.0)).all()
    for st in city.streets:                                   # every street is mapped
        on = (np.abs(c[:, 1 - st.axis] - st.coord) <= st.width / 2)
        assert on.sum() >= 5
    # level views (OpenCV: the camera's y axis points down), varied headings
    fwd = np.array([p.R[2] for p in poses])
    assert (np.abs(fwd[:, 2]) < 0.25).all() and np.all(np.array([p.R[1, 2] for p in poses]) < -0.9)
    yaw = np.degrees(np.arctan2(fwd[:, 1], fwd[:, 0]))
    assert np.histogram(yaw % 360, bins=8, range=(0, 360))[0].min() > 10
    again = S.city_mapping_poses(city, 400, seed=1)
    assert all(np.array_equal(a.matrix(), b.matrix()) for a, b in zip(poses, again))
    other = S.city_mapping_poses(city, 400, seed=2)
    assert not np.allclose(other[0].matrix(), poses[0].matrix())


def test_query_poses_on_streets_and_new(city):
    mapping = S.city_mapping_poses(city, 400, seed=1)
    queries = S.city_query_poses(city, 4, seed=1)
    c = np.array([p.center for p in queries])
    assert city.on_street(c, margin=1.0).all() and city.is_free(c, margin=1.0).all()
    m = np.array([p.center for p in mapping])
    assert np.linalg.norm(m[None] - c[:, None], axis=2).min() > 1e-3
    again = S.city_query_poses(city, 2, seed=1)              # a prefix of the longer list
    assert all(np.array_equal(a.matrix(), b.matrix()) for a, b in zip(queries, again))


def test_batched_views_match_pose_from_view():
    from vloc.datasets.synthetic.city import _views
    rng = np.random.default_rng(0)
    c, (yaw, pitch, roll) = rng.normal(size=(20, 3)), rng.uniform(-3, 3, (3, 20)) * [[1], [0.2], [0.05]]
    for pose, args in zip(_views(c, yaw, pitch, roll), zip(c, yaw, pitch, roll)):
        assert np.allclose(pose.matrix(), S.pose_from_view(*args).matrix(), atol=1e-12)


# --------------------------------------------------------------------------- rendering
def test_city_view_is_textured_and_depth_is_exact(city):
    pose = S.city_query_poses(city, 1, seed=7)[0]
    rgb, depth = S.render(city, CAM, pose)
    _, qid = S.raycast(city, CAM, pose)
    facade = np.array(city.facade)[np.maximum(qid, 0)] & (qid >= 0)
    assert (qid >= 0).mean() > 0.5 and facade.mean() > 0.25
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(float)
    assert gray[facade].std() > 15
    # facade pixels lifted with their depth lie on their quad
    ii, jj = np.nonzero(facade)
    pick = np.linspace(0, len(ii) - 1, 300).astype(int)
    ii, jj = ii[pick], jj[pick]
    z = depth[ii, jj].astype(np.float64)
    X = pose.inverse().transform(np.c_[CAM.unproject(np.c_[jj + 0.5, ii + 0.5]) * z[:, None], z])
    for x, k, zk in zip(X, qid[ii, jj], z):
        q = city.quads[k]
        o, u, v = (np.array(a) for a in (q.origin, q.u_edge, q.v_edge))
        assert abs((x - o) @ q.normal) < 1e-5 * zk + 1e-4
        s, t = (x - o) @ u / (u @ u), (x - o) @ v / (v @ v)
        assert -1e-3 <= s <= 1 + 1e-3 and -1e-3 <= t <= 1 + 1e-3
    # nothing is seen beyond the view distance
    r = np.linalg.norm(np.c_[CAM.unproject(np.c_[jj + 0.5, ii + 0.5]), np.ones(len(ii))], axis=1) * z
    assert r.max() <= city.view_distance and (depth == 0).any()


def test_culling_equals_full_raycast(small):
    cam = Camera.pinhole(60.0, 60.0, 40.0, 30.0, 80, 60)
    poses = S.city_mapping_poses(small, 6, seed=3) + S.city_query_poses(small, 2, seed=3)
    from vloc.datasets.synthetic.rendering import _visible
    for pose in poses:
        assert len(_visible(small, cam, pose)) < len(small.quads) / 4
        rgb, depth = S.render(small, cam, pose)
        rgb_all, depth_all = S.render(small, cam, pose, cull=False)
        assert np.array_equal(rgb, rgb_all) and np.array_equal(depth, depth_all)


def test_culling_keeps_views_local(city):
    from vloc.datasets.synthetic.rendering import _visible
    counts = [len(_visible(city, CAM, p)) for p in S.city_mapping_poses(city, 50, seed=0)]
    assert max(counts) < 150 and len(city.quads) > 4000


# --------------------------------------------------------------------------- scenes on disk
def test_generate_city_loads_with_splits(tmp_path):
    scene = S.generate_city(tmp_path / "a", TINY, progress=False, workers=2)
    loaded = Scene.load(tmp_path / "a")
    assert loaded.format == "synthetic" and loaded.metric and len(loaded) == 15
    fold = loaded.split("official")[0]
    assert [f.name for f in fold.mapping] == [f"mapping/000/{i:06d}.jpg" for i in range(12)]
    assert [f.name for f in fold.query] == [f"query/000/{i:06d}.jpg" for i in range(3)]
    mapping, queries = S.city_scene_poses(TINY)
    for f, pose in zip(loaded.frames, mapping + queries):
        assert np.array_equal(f.cam_from_world.R, pose.R) and np.array_equal(f.cam_from_world.t, pose.t)
        assert f.camera == TINY.camera() and not f.has_depth
    rgb, _ = S.render(TINY.world(), TINY.camera(), mapping[4])
    img = cv2.cvtColor(cv2.imread(str(loaded.frames[4].image_path)), cv2.COLOR_BGR2RGB)
    assert np.abs(img.astype(float) - rgb).mean() < 4                          # JPEG, quality 90
    # the same config gives the same bytes; the folder is returned as is
    S.generate_city(tmp_path / "b", TINY, progress=False, workers=1)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa == fb and len(fa) == 16
    assert len(S.generate_city(tmp_path / "a", TINY, progress=False)) == len(scene)


def test_generate_city_resumes(tmp_path):
    out = tmp_path / "c"
    cfg = S.CityConfig(**{**TINY.to_dict(), "n_mapping": 3, "n_query": 1, "write_depth": True,
                          "image_format": "png"})
    scene = S.generate_city(out, cfg, progress=False, workers=1)
    before = _files(out)
    f = scene.frames[1]
    depth = cv2.imread(str(f.depth_path), cv2.IMREAD_UNCHANGED)
    rgb, d = S.render(cfg.world(), cfg.camera(), f.cam_from_world)
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(f.image_path)), cv2.COLOR_BGR2RGB), rgb)
    assert depth.dtype == np.uint16 and np.abs(depth * f.depth_scale - d).max() <= 0.001 + 1e-6
    # an interrupted run: no manifest, a truncated image, a stale temporary file
    (out / S.MANIFEST).unlink()
    (out / city_scene.PENDING).write_text(json.dumps(city_scene._stamp(cfg)))
    (out / f.name).write_bytes(before[f.name][:100])
    (out / "mapping/000/.x.part").write_bytes(b"junk")
    keep = (out / scene.frames[0].name).stat().st_mtime_ns
    S.generate_city(out, cfg, progress=False, workers=1)
    assert _files(out) == before and (out / scene.frames[0].name).stat().st_mtime_ns == keep
    # another config: refused unless overwrite
    other = S.CityConfig(**{**cfg.to_dict(), "seed": 6})
    with pytest.raises(DataError):
        S.generate_city(out, other, progress=False)
    assert len(S.generate_city(out, other, overwrite=True, progress=False, workers=1)) == 4
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(DataError):
        S.generate_city(tmp_path / "junk", cfg, progress=False)


def test_city_config_validation():
    with pytest.raises(DataError):
        S.CityConfig(image_format="gif")
    with pytest.raises(DataError):
        S.CityConfig(n_mapping=0)
    with pytest.raises(DataError):
        S.CityConfig(width="wide")
    with pytest.raises(DataError):
        S.CityConfig.from_dict({"colour": 1})
    assert S.CityConfig.from_dict(TINY.to_dict()) == TINY
