"""Mapping layouts of the synthetic room: "path" as before, "cover" spread over the
free space with queries that do not depend on the number of mapping images."""
import json
import math

import numpy as np
import pytest

from vloc.datasets import synthetic as S
from vloc.errors import DataError


def _cover(n_mapping, n_query=20, seed=0):
    cfg = S.SyntheticConfig(layout="cover", n_mapping=n_mapping, n_query=n_query, seed=seed)
    return S.build_world(cfg), *S.scene_poses(cfg)


def test_path_layout_unchanged():
    # values of the default config before layouts existed
    mapping, queries = S.scene_poses(S.SyntheticConfig())
    assert S.SyntheticConfig().layout == "path" and (len(mapping), len(queries)) == (48, 12)
    np.testing.assert_allclose(mapping[0].q, [0.2167265156027547, 0.2586318019696521, 0.7460519123885356,
                                              -0.5740607567723368], rtol=0, atol=1e-12)
    np.testing.assert_allclose(mapping[0].t, [-0.3927925862399398, 2.2191421576583723, -2.120125014945905],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(queries[0].q, [0.6609334271200846, 0.7147052883997955, -0.20386471228231517,
                                              0.10393524298674525], rtol=0, atol=1e-12)
    np.testing.assert_allclose(queries[0].t, [0.03813978865737811, 1.045999192689257, 2.449058571567792],
                               rtol=0, atol=1e-12)


def test_cover_poses_in_free_space():
    world, mapping, queries = _cover(200)
    assert (len(mapping), len(queries)) == (200, 20)
    C = np.array([p.center for p in mapping + queries])
    assert world.is_free(C, margin=0.3).all()
    H = world.free_max[2] - world.free_min[2]
    assert np.all((C[:, 2] >= 0.35 * H - 1e-9) & (C[:, 2] <= 0.7 * H + 1e-9))
    for p in mapping + queries:
        right, forward = p.R[0], p.R[2]
        assert abs(math.degrees(math.asin(forward[2]))) <= 10 + 1e-6      # pitch
        assert abs(math.degrees(math.asin(right[2]))) <= 3 + 1e-6         # roll (tilt of the x axis)
    yaw = np.array([math.atan2(p.R[2, 1], p.R[2, 0]) for p in mapping])
    assert np.histogram(yaw, bins=4, range=(-np.pi, np.pi))[0].min() >= 30      # all headings


def test_cover_spreads_over_the_floor():
    world, mapping, _ = _cover(200)
    lo, hi = np.array(world.free_min[:2]), np.array(world.free_max[:2])
    cells = {tuple(c) for c in np.floor(np.array([p.center[:2] for p in mapping]) - lo).astype(int)}
    assert len(cells) >= 0.8 * np.prod(np.ceil(hi - lo))             # 1 m cells holding a centre
    path, _ = S.scene_poses(S.SyntheticConfig(n_mapping=200))
    assert len({tuple(c) for c in np.floor(np.array([p.center[:2] for p in path]) - lo).astype(int)}) < 0.5 * len(cells)


def test_cover_deterministic_and_queries_independent_of_n_mapping():
    _, m1, q1 = _cover(200)
    _, m2, q2 = _cover(200)
    assert all(np.array_equal(a.q, b.q) and np.array_equal(a.t, b.t) for a, b in zip(m1 + q1, m2 + q2))
    _, m3, q3 = _cover(50)
    assert len(m3) == 50 and all(np.array_equal(a.q, b.q) and np.array_equal(a.t, b.t) for a, b in zip(q1, q3))
    _, m4, q4 = _cover(200, seed=1)
    assert not np.allclose(q4[0].t, q1[0].t) and not np.allclose(m4[0].t, m1[0].t)
    assert min(np.linalg.norm(a.center - b.center) for a in q1 for b in m1) > 0   # not mapping frames


def test_layout_config(tmp_path):
    with pytest.raises(DataError, match="path, cover"):
        S.SyntheticConfig(layout="grid")
    cfg = S.SyntheticConfig(name="tiny", width=32, height=24, focal=25.0, n_mapping=3, n_query=2, seed=3,
                            texture_size=64, layout="cover")
    assert S.SyntheticConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in S.SyntheticConfig().to_dict().items() if k != "layout"}
    assert S.SyntheticConfig.from_dict(old) == S.SyntheticConfig()
    scene = S.generate_scene(tmp_path / "s", cfg)
    assert len(scene.frames) == 5 and S.generate_scene(tmp_path / "s", cfg).root == scene.root
    with pytest.raises(DataError):
        S.generate_scene(tmp_path / "s", S.SyntheticConfig(**{**cfg.to_dict(), "layout": "path"}))


def test_scene_written_before_layouts_is_still_recognised(tmp_path):
    cfg = S.SyntheticConfig(name="tiny", width=32, height=24, focal=25.0, n_mapping=3, n_query=1, seed=3,
                            texture_size=64)
    S.generate_scene(tmp_path / "s", cfg)
    file = tmp_path / "s" / S.MANIFEST
    manifest = json.loads(file.read_text())
    del manifest["config"]["layout"]
    file.write_text(json.dumps(manifest))
    stamp = file.stat().st_mtime_ns
    assert len(S.generate_scene(tmp_path / "s", cfg)) == 4 and file.stat().st_mtime_ns == stamp
