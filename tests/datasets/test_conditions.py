"""Appearance conditions of the synthetic room: the same geometry and depth under every
condition, images that differ from the day image by stated amounts, determinism, the
`condition` option of SyntheticConfig (query frames only) and scenes per condition."""
import json

import numpy as np
import pytest

from vloc._libs import cv2
from vloc.datasets import synthetic as S
from vloc.datasets.synthetic.conditions import (CONDITION_NAMES, CONDITION_VERSION, apply_sensor,
                                                condition_world, generate_condition_scenes, render_condition)
from vloc.errors import DataError

CFG = S.SyntheticConfig(width=320, height=240, focal=250.0, n_mapping=24, n_query=6, seed=7)
TINY = S.SyntheticConfig(name="tiny", width=96, height=72, focal=75.0, n_mapping=3, n_query=2, seed=3)


@pytest.fixture(scope="module")
def renders():
    """Day and condition renders of queries 0 and 3 of CFG: {(condition, query): (rgb, depth)}."""
    world = S.build_world(CFG)
    _, queries = S.scene_poses(CFG, world)
    out = {}
    for qi in (0, 3):
        for c in CONDITION_NAMES:
            out[c, qi] = render_condition(world, CFG.camera(), queries[qi], c, seed=CFG.seed, frame=qi)
        out["plain", qi] = S.render(world, CFG.camera(), queries[qi])
    return out


def gray(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)


def test_same_geometry_and_depth(renders):
    world = S.build_world(CFG)
    for c in CONDITION_NAMES:
        w = condition_world(world, c)
        assert w.quads is world.quads and w.obstacles is world.obstacles and w.free_min == world.free_min
        for qi in (0, 3):
            depth, day_depth = renders[c, qi][1], renders["plain", qi][1]
            assert depth.dtype == np.float32 and np.array_equal(depth, day_depth), (c, qi)
    # "day" is the plain rendering, byte for byte
    for qi in (0, 3):
        assert np.array_equal(renders["day", qi][0], renders["plain", qi][0])


# (condition, query): lower bound of the mean absolute grey difference to the day image
# (0..255), and the range of the ratio of mean grey levels (condition / day). Measured:
# q0: low-sun 51.7 / 0.39, dusk 53.6 / 0.37, night 69.2 / 0.19, noise-blur 9.9 / 1.00;
#     q3: 53.0 / 0.41, 59.6 / 0.34, 62.9 / 0.31, 8.5 / 1.00
GREY = {"low-sun": (35, 0.3, 0.5), "dusk": (40, 0.25, 0.45), "night": (50, 0.1, 0.35),
        "noise-blur": (7, 0.98, 1.02)}


@pytest.mark.parametrize("name", list(GREY))
def test_images_differ_by_stated_amounts(renders, name):
    lo, r0, r1 = GREY[name]
    for qi in (0, 3):
        g, day = gray(renders[name, qi][0]), gray(renders["day", qi][0])
        assert np.abs(g - day).mean() > lo, (name, qi)
        assert r0 < g.mean() / day.mean() < r1, (name, qi)


def test_season_and_blur(renders):
    # season: same light, other colours: mean |RGB difference| 16.5 (q0) and 36.0 (q3),
    # snow on the floor: q3 sees floor, pixels near white appear
    for qi, lo in ((0, 12), (3, 30)):
        rgb, day = renders["season", qi][0].astype(float), renders["day", qi][0].astype(float)
        assert np.abs(rgb - day).mean() > lo
    def snowy(rgb):          # bright and colourless
        rgb = rgb.astype(int)
        return ((rgb.mean(2) > 150) & (rgb.max(2) - rgb.min(2) < 16)).mean()
    assert snowy(renders["day", 3][0]) < 0.05 and snowy(renders["season", 3][0]) > 0.18    # 0.040, 0.217
    # noise-blur: the Laplacian of the lightly smoothed image loses most of its energy
    # (measured 0.31 and 0.19 of the day image's variance)
    for qi in (0, 3):
        def lap(img):
            return cv2.Laplacian(cv2.GaussianBlur(gray(img), (0, 0), 1.0), cv2.CV_64F).var()
        assert lap(renders["noise-blur", qi][0]) < 0.45 * lap(renders["day", qi][0])


def test_sensor_is_seeded():
    img = np.full((40, 50, 3), 100, np.uint8)
    a = apply_sensor(img, "night", seed=1, frame=2)
    assert np.array_equal(a, apply_sensor(img, "night", seed=1, frame=2))
    assert not np.array_equal(a, apply_sensor(img, "night", seed=1, frame=3))
    # variance a * I + b = 1.0 * 100 + 9: std ~10.4
    assert 9.5 < a.astype(float).std() < 11.5 and abs(a.astype(float).mean() - 100) < 0.5
    assert apply_sensor(img, "day") is img and apply_sensor(img, "season") is img
    with pytest.raises(DataError, match="unknown condition 'fog'"):
        apply_sensor(img, "fog")


def test_config_option_renders_queries_only(tmp_path):
    assert "condition" not in TINY.to_dict()              # day manifests stay as they were
    night_cfg = S.SyntheticConfig(**{**TINY.to_dict(), "condition": "night"})
    assert night_cfg.to_dict()["condition"] == "night"
    assert S.SyntheticConfig.from_dict(night_cfg.to_dict()) == night_cfg
    with pytest.raises(DataError, match="unknown synthetic condition 'rain'"):
        S.SyntheticConfig(condition="rain")
    day = S.generate_scene(tmp_path / "day", TINY)
    night = S.generate_scene(tmp_path / "night", night_cfg)
    manifest = json.loads((tmp_path / "night" / S.MANIFEST).read_text())
    assert manifest["config"]["condition"] == "night" and manifest["condition_version"] == CONDITION_VERSION
    assert "condition_version" not in json.loads((tmp_path / "day" / S.MANIFEST).read_text())
    # a scene rendered under another version of the conditions is not taken for this one
    manifest["condition_version"] = CONDITION_VERSION - 1
    (tmp_path / "night" / S.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="another config or renderer version"):
        S.generate_scene(tmp_path / "night", night_cfg)
    night = S.generate_scene(tmp_path / "night", night_cfg, overwrite=True)
    for fd, fn in zip(day.frames, night.frames):
        assert fd.name == fn.name and np.allclose(fd.cam_from_world.matrix(), fn.cam_from_world.matrix())
        same_image = fd.image_path.read_bytes() == fn.image_path.read_bytes()
        assert same_image == fd.name.startswith("mapping/"), fd.name
        assert fd.depth_path.read_bytes() == fn.depth_path.read_bytes()
    # mapping frames copied from another condition's scene: the same files
    dusk = S.generate_scene(tmp_path / "dusk", S.SyntheticConfig(**{**TINY.to_dict(), "condition": "dusk"}),
                            mapping_from=tmp_path / "day")
    for fd, fu in zip(day.frames, dusk.frames):
        if fd.name.startswith("mapping/"):
            assert fd.image_path.read_bytes() == fu.image_path.read_bytes()


def test_scenes_per_condition(tmp_path):
    scenes = generate_condition_scenes(tmp_path, TINY, ("day", "season", "noise-blur"))
    assert sorted(scenes) == ["day", "noise-blur", "season"]
    day_q = [f for f in scenes["day"].frames if f.name.startswith("query/")]
    for name in ("season", "noise-blur"):
        s = scenes[name]
        assert s.split("official")[0].mapping[0].image_path.read_bytes() == \
            scenes["day"].split("official")[0].mapping[0].image_path.read_bytes()
        q = [f for f in s.frames if f.name.startswith("query/")]
        assert [f.name for f in q] == [f.name for f in day_q]
        a = cv2.imread(str(q[0].image_path))
        assert not np.array_equal(a, cv2.imread(str(day_q[0].image_path)))
    # a second call finds the scenes made
    again = generate_condition_scenes(tmp_path, TINY, ("day", "season"))
    assert again["season"].root == scenes["season"].root
