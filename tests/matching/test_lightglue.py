"""LightGlue (kornia, packaged weights) on two views of the synthetic room: matches
agree with the known relative pose; key remapping and errors."""
import numpy as np
import pytest
import torch

from vloc._libs import cv2
from vloc.datasets import synthetic as S
from vloc.errors import VlocError
from vloc.features import make_extractor
from vloc.features.base import Features
from vloc.features.weights import load_state_dict
from vloc.matching.geometry import epipolar_errors
from vloc.matching.lightglue import LightGlueMatcher, remap_release_keys


@pytest.fixture(scope="module")
def views():
    """A query and its nearest mapping view (0.4 m apart), 320x240, with known poses."""
    cfg = S.SyntheticConfig(width=320, height=240, focal=250.0, n_mapping=24, n_query=6, seed=7)
    world = S.build_world(cfg)
    mapping, queries = S.scene_poses(cfg, world)
    cam = cfg.camera()
    poses = [queries[0], mapping[20]]
    images = [cv2.cvtColor(S.render(world, cam, p)[0], cv2.COLOR_RGB2GRAY) for p in poses]
    return images, cam, poses


@pytest.mark.parametrize("features", ["aliked", "disk"])
def test_matches_agree_with_the_relative_pose(views, features):
    images, cam, poses = views
    ex = make_extractor(features, max_keypoints=400)
    f0, f1 = (ex.extract(im, (cam.width, cam.height)) for im in images)
    lg = LightGlueMatcher(features)
    m, scores = lg.match_with_scores(f0, f1)
    assert m.dtype == np.int64 and m.shape[1] == 2 and len(m) >= 60
    assert len(np.unique(m[:, 0])) == len(m) == len(np.unique(m[:, 1]))       # one-to-one
    assert np.all(scores > 0.1)
    err = epipolar_errors(f0.keypoints[m[:, 0]], f1.keypoints[m[:, 1]], cam, cam, *poses)
    assert np.mean(err < 2.0) > 0.9                                            # pixels
    assert np.array_equal(m, lg.match(f0, f1))                                 # deterministic
    # a stricter confidence keeps a subset
    strict = LightGlueMatcher(features, filter_threshold=0.8).match(f0, f1)
    assert 0 < len(strict) < len(m) and {tuple(r) for r in strict} <= {tuple(r) for r in m}


def test_release_keys_are_renamed_to_kornias():
    sd = {"self_attn.3.Wqkv.weight": 1, "cross_attn.8.to_qk.bias": 2, "log_assignment.2.r": 3,
          "log_assignment.2.final_proj.weight": 4, "transformers.0.self_attn.ffn.0.weight": 5}
    assert remap_release_keys(sd) == {"transformers.3.self_attn.Wqkv.weight": 1,
                                      "transformers.8.cross_attn.to_qk.bias": 2,
                                      "log_assignment.2.final_proj.weight": 4,
                                      "transformers.0.self_attn.ffn.0.weight": 5}


def test_errors(tmp_path):
    with pytest.raises(VlocError, match="LightGlue has weights for aliked, disk"):
        LightGlueMatcher("sift")
    f = Features(np.full((3, 2), 5, np.float32), np.eye(3, 64, dtype=np.float32), np.ones(3, np.float32),
                 np.ones(3, np.float32), (10, 10))
    with pytest.raises(VlocError, match="needs 128-D descriptors, got 64"):
        LightGlueMatcher("aliked").match(f, f)
    empty = f.subset(np.zeros(0, int))
    assert LightGlueMatcher("aliked").match(empty, f).shape == (0, 2)
    wrong = tmp_path / "aliked.pth"
    torch.save(load_state_dict("aliked-n16"), wrong)
    g = Features(f.keypoints, np.eye(3, 128, dtype=np.float32), f.scores, f.scales, f.image_size)
    with pytest.raises(VlocError, match=r"aliked\.pth do not fit LightGlue"):
        LightGlueMatcher("disk", weights=str(wrong)).match(g, g)
