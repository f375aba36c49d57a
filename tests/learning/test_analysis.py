"""Base-pose analysis of pose regression (Sattler et al. 2019) on hand-set last layers."""
import sys
import types

import numpy as np
import pytest

from vloc.errors import VlocError
from vloc.learning.analysis import (analyze_regression_map, base_poses, ground_axes,
                                    linear_positions, nearest_training, plot_base_poses)

# out = b + W f with F = 3 features; world position = mean + scale * out[:3]
W = np.array([[1, 0, 0], [0, 2, 0], [0, 0, -1],          # position rows
              [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], float)   # quaternion rows (w x y z)
B = np.array([0.5, 0, 0, 1, 0, 0, 0], float)
MEAN, SCALE = np.array([10.0, 20.0, 1.0]), 2.0
FEATURES = np.array([[2, 0, 1], [4, 0, 3]], float)      # feature 1 never fires


def test_base_poses_by_hand():
    base = base_poses(W, B, FEATURES, MEAN, SCALE, percentile=50)     # a = (3, 0, 2)
    np.testing.assert_allclose(base.activations, [3, 0, 2])
    np.testing.assert_allclose(base.positions, [[17, 20, 1], [11, 20, 1], [11, 20, -3]])
    np.testing.assert_allclose(base.quaternions, [[1 / np.sqrt(10), 3 / np.sqrt(10), 0, 0],
                                                  [1, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_allclose(base.share, [0.6, 0.0, 0.4])          # (6*1, 0*2, 4*1) / 10
    np.testing.assert_allclose(base.active, [1, 0, 1])
    np.testing.assert_allclose(base.bias_position, [11, 20, 1])
    assert base.strongest(2).tolist() == [0, 2]
    assert base.features_for(0.5) == 1 and base.features_for(0.9) == 2
    # a prediction is the bias plus the activation-weighted base offsets
    np.testing.assert_allclose(linear_positions(W, B, FEATURES[:1], MEAN, SCALE), [[15, 20, -1]])


def test_base_poses_rejects_bad_input():
    with pytest.raises(VlocError, match="non-negative"):
        base_poses(W, B, -FEATURES, MEAN, SCALE)
    with pytest.raises(VlocError, match="features must be"):
        base_poses(W, B, FEATURES[:, :2], MEAN, SCALE)
    with pytest.raises(VlocError, match="pose head"):
        base_poses(W[:3], B, FEATURES, MEAN, SCALE)


def test_ground_axes_and_nearest():
    pts = np.array([[0, 5, 0], [4, 5.1, 3], [8, 4.9, -3]], float)
    assert ground_axes(pts) == (0, 2)
    assert nearest_training(pts, [[7, 0, -2], [0.1, 5, 0]]).tolist() == [2, 0]


def test_plot_writes_png(tmp_path):
    base = base_poses(W, B, FEATURES, MEAN, SCALE)
    rng = np.random.default_rng(0)
    train = MEAN + rng.normal(size=(30, 3)) * [3, 2, 0.2]
    test = MEAN + rng.normal(size=(5, 3)) * [3, 2, 0.2]
    pred = test + 0.5
    path = plot_base_poses(tmp_path / "out" / "base.png", train, test, pred, base,
                           train[nearest_training(train, test)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.fixture(scope="module")
def tiny_room(tmp_path_factory):
    from vloc.datasets.synthetic import SyntheticConfig, generate_scene
    return generate_scene(tmp_path_factory.mktemp("room") / "scene",
                          SyntheticConfig(width=32, height=24, focal=25.0, n_mapping=8, n_query=3,
                                          texture_size=64, seed=3))


def _stand_in_localizer(monkeypatch):
    """A stand-in for vloc.localizers.regression with the contract of PoseRegressor."""
    import torch
    from torch import nn

    class Regressor(nn.Module):
        def __init__(self, n_features=6):
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, n_features, 3, stride=2), nn.ReLU(),
                                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(n_features, 7)
            self.register_buffer("position_mean", torch.tensor([5.0, 4.0, 1.5]))
            self.register_buffer("position_scale", torch.tensor(2.0))

        def features(self, images):
            return self.backbone(images)

        def forward(self, images):
            out = self.head(self.features(images))
            return self.position_mean + self.position_scale * out[:, :3], out[:, 3:]

    class Localizer:
        def __init__(self):
            torch.manual_seed(0)
            self.model = Regressor()

        @classmethod
        def load(cls, map_dir):
            return cls()

        def preprocess(self, image):
            return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    module = types.ModuleType("vloc.localizers.regression")
    module.RegressionLocalizer = Localizer
    monkeypatch.setitem(sys.modules, "vloc.localizers.regression", module)
    return Localizer


def test_analyze_regression_map_with_stand_in(tiny_room, tmp_path, monkeypatch):
    import torch
    from vloc.imageio import read_image
    torch.set_num_threads(1)
    loc = _stand_in_localizer(monkeypatch).load(None)
    stats = analyze_regression_map(tmp_path / "map", tiny_room, "official", tmp_path / "base.png")
    assert (tmp_path / "base.png").stat().st_size > 5000
    assert stats["features"] == 6 and 1 <= stats["features_for_90_percent"] <= 6
    # the linear decomposition gives the network's own predictions
    queries = [f for f in tiny_room.split("official")[0].query]
    with torch.no_grad():
        x = torch.cat([loc.preprocess(read_image(f.image_path)[0]) for f in queries])
        centres = loc.model(x)[0].numpy()
    truth = np.array([f.cam_from_world.center for f in queries])
    assert stats["median_prediction_error"] == pytest.approx(
        float(np.median(np.linalg.norm(centres - truth, axis=1))), rel=1e-5)


def test_analyze_without_regression_module(tiny_room, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vloc.localizers.regression", None)     # import fails
    with pytest.raises(VlocError, match="pose regression is not available"):
        analyze_regression_map(tmp_path, tiny_room, "official", tmp_path / "x.png")


def test_linear_positions_match_the_pose_regressor():
    """The contract with vloc.learning.networks: centres = mean + scale * (b + W f)[:3]."""
    torch = pytest.importorskip("torch")
    networks = pytest.importorskip("vloc.learning.networks")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = networks.PoseRegressor("resnet", feature_dim=8, width=4).eval()
    model.set_position_normalisation(torch.randn(10, 3) * 3 + 1)
    with torch.no_grad():
        model.head.weight.normal_()
        x = torch.rand(3, 3, 32, 32)
        f = model.features(x).numpy()
        centres = model(x)[0].numpy()
    head = model.head
    assert (f >= 0).all()
    np.testing.assert_allclose(
        linear_positions(head.weight.detach().numpy(), head.bias.detach().numpy(), f,
                         model.position_mean.numpy(), float(model.position_scale)), centres, atol=1e-4)
