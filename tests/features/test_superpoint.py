"""SuperPoint for user-given weights: no weights ship with vloc, so every test saves a
seeded random-init state dict itself. Loading (MagicLeap / LightGlue names, rpautrat's
BatchNorm layout, prefixes), the extractor contract, determinism, tiles and batches
giving the same features, and the error paths."""
import numpy as np
import pytest
import torch

from vloc._libs import cv2
from vloc.errors import VlocError
from vloc.features import LOCAL_FEATURES, make_extractor
from vloc.features.superpoint import SuperPoint, SuperPointConfig, _build_network, normalize_state_dict

ML_KEYS = 24          # 12 convolutions, weight + bias


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded random SuperPoint in MagicLeap's key layout, saved as a plain state dict."""
    torch.manual_seed(0)
    net = _build_network(batchnorm=False)
    path = tmp_path_factory.mktemp("sp") / "superpoint_random.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


@pytest.fixture(scope="module")
def image(room_render):
    """A 160x120 gray crop of the 320x240 render of the synthetic room."""
    return np.ascontiguousarray(cv2.cvtColor(room_render, cv2.COLOR_RGB2GRAY)[60:180, 80:240])


def test_state_dict_layout(weights):
    path, sd = weights
    assert len(sd) == ML_KEYS and list(sd)[:2] == ["conv1a.weight", "conv1a.bias"]
    assert sd["convPb.weight"].shape == (65, 256, 1, 1) and sd["convDb.weight"].shape == (256, 256, 1, 1)
    assert "superpoint" in LOCAL_FEATURES


def test_contract_and_determinism(weights, image):
    path, _ = weights
    ex = make_extractor("superpoint", weights=str(path), max_keypoints=200)
    original = (320, 240)                       # as if the crop were the image downscaled by 2
    f = ex.extract(image, original)
    assert len(f) == 200 and f.image_size == original        # the budget is reached (random net)
    assert f.keypoints.shape == (200, 2) and f.keypoints.dtype == np.float32
    assert f.descriptors.shape == (200, 256) and f.descriptors.dtype == np.float32
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-5)
    assert np.all(np.diff(f.scores) <= 0) and np.all(f.scores > 0.005)     # strongest first, thresholded
    # keypoints at pixel indices 4 .. 155 / 115 (borders removed), times 2, vloc convention (+0.5)
    idx = f.keypoints / 2 - 0.5
    assert np.allclose(idx, np.round(idx), atol=1e-5)
    assert idx.min() >= 4 and idx[:, 0].max() <= 155 and idx[:, 1].max() <= 115
    # NMS radius 4: no two keypoints in one 9x9 window
    d = np.abs(idx[:, None] - idx[None]).max(-1) + 100 * np.eye(len(idx))
    assert d.min() > 4
    assert ex.config_dict() == {"name": "superpoint", **SuperPointConfig(weights=str(path), max_keypoints=200).__dict__}
    # again, from another extractor (cached network), and from RGB: the same bytes
    g = make_extractor("superpoint", weights=str(path), max_keypoints=200).extract(
        np.repeat(image[..., None], 3, axis=2), original)
    for a, b in zip((f.keypoints, f.descriptors, f.scores), (g.keypoints, g.descriptors, g.scores)):
        assert np.array_equal(a, b)
    # the keypoint budget is configurable; a lower budget keeps the strongest
    h = make_extractor("superpoint", weights=str(path), max_keypoints=50).extract(image, original)
    assert len(h) == 50 and np.array_equal(h.keypoints, f.keypoints[:50])


def test_descriptor_is_the_bilinear_sample(weights, image):
    """The descriptor of a keypoint is the normalised dense map sampled at it (cell i's
    centre at pixel 8i + 3.5), renormalised: checked in numpy for a few keypoints."""
    path, sd = weights
    ex = SuperPoint(SuperPointConfig(weights=str(path), max_keypoints=30))
    f = ex.extract(image, (160, 120))
    net = _build_network(False)
    net.load_state_dict(sd)
    with torch.inference_mode():
        _, desc = net(torch.from_numpy(image).float()[None, None] / 255)
    D = torch.nn.functional.normalize(desc, dim=1)[0].numpy()        # (256, 15, 20)
    for (x, y), got in zip(f.keypoints[:5] - 0.5, f.descriptors[:5]):
        u, v = (x - 3.5) / 8, (y - 3.5) / 8
        u0, v0 = int(np.floor(u)), int(np.floor(v))
        a, b = u - u0, v - v0
        want = ((1 - a) * (1 - b) * D[:, v0, u0] + a * (1 - b) * D[:, v0, u0 + 1]
                + (1 - a) * b * D[:, v0 + 1, u0] + a * b * D[:, v0 + 1, u0 + 1])
        assert np.allclose(got, want / np.linalg.norm(want), atol=1e-5)


def test_tiles_and_batches_give_the_same_features(weights, image):
    path, _ = weights
    whole = SuperPoint(SuperPointConfig(weights=str(path), max_keypoints=300))
    tiled = SuperPoint(SuperPointConfig(weights=str(path), max_keypoints=300, tile_size=64))   # 3 x 2 tiles
    a, b = whole.extract(image, (160, 120)), tiled.extract(image, (160, 120))
    assert np.array_equal(a.keypoints, b.keypoints)
    assert np.allclose(a.descriptors, b.descriptors, atol=1e-5) and np.allclose(a.scores, b.scores, atol=1e-6)
    flipped = np.ascontiguousarray(image[:, ::-1])
    odd = np.ascontiguousarray(image[:117, :150])       # another size, not a multiple of 8
    batch = whole.extract_batch([image, flipped, odd, image], [(160, 120), (160, 120), (150, 117), (160, 120)])
    for got, img in zip(batch, (image, flipped, odd, image)):
        want = whole.extract(img, img.shape[::-1])
        assert np.array_equal(got.keypoints, want.keypoints)
        assert np.allclose(got.descriptors, want.descriptors, atol=1e-5)
    assert batch[2].keypoints[:, 0].max() < 150 - 4 and batch[2].keypoints[:, 1].max() < 117 - 4


def _to_rpautrat(sd_bn: dict) -> dict:
    """This module's names -> rpautrat/SuperPoint's superpoint_pytorch.py names."""
    out = {}
    for k, v in sd_bn.items():
        layer, rest = k.split(".", 1)
        kind = "conv" if layer.startswith("conv") else "bn"
        tag = layer[4:] if kind == "conv" else layer[2:]
        if tag[0] in "PD":
            out[f"{'detector' if tag[0] == 'P' else 'descriptor'}.{'ab'.index(tag[1])}.{kind}.{rest}"] = v
        else:
            out[f"backbone.{int(tag[0]) - 1}.{'ab'.index(tag[1])}.{kind}.{rest}"] = v
    return out


def test_rpautrat_layout_and_prefixes(weights, image, tmp_path):
    """rpautrat's layout (BatchNorm after each ReLU) with identity BatchNorms gives the
    MagicLeap network's features; a whole model saved with a prefix loads too."""
    path, sd = weights
    bn = _build_network(batchnorm=True)
    full = dict(bn.state_dict())
    for k in full:
        if k.startswith("conv"):
            full[k] = sd[k]
        elif k.endswith("running_var"):
            full[k] = torch.full_like(full[k], 1 - 1e-3)           # sqrt(var + eps) = 1
    assert sum(k.startswith("bn") for k in full) == 12 * 5
    converted = _to_rpautrat(full)
    assert "backbone.0.0.conv.weight" in converted and "detector.1.bn.running_mean" in converted
    assert normalize_state_dict(converted) == (full, True)
    torch.save(converted, tmp_path / "rpautrat.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "wrapped.pth")
    ref = SuperPoint(SuperPointConfig(weights=str(path), max_keypoints=100)).extract(image, (160, 120))
    for name in ("rpautrat.pth", "wrapped.pth"):
        f = SuperPoint(SuperPointConfig(weights=str(tmp_path / name), max_keypoints=100)).extract(image, (160, 120))
        assert np.array_equal(f.keypoints, ref.keypoints), name
        assert np.allclose(f.descriptors, ref.descriptors, atol=1e-5), name


def test_errors(weights, tmp_path):
    path, sd = weights
    with pytest.raises(VlocError, match="need a weights file"):
        make_extractor("superpoint")
    with pytest.raises(VlocError, match="SuperPoint weights not found: .*nowhere.pth"):
        make_extractor("superpoint", weights=str(tmp_path / "nowhere.pth"))
    missing = {k: v for k, v in sd.items() if k != "convDb.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(VlocError, match=r"missing.pth do not fit .*1 missing keys \[convDb.bias\], 0 unexpected"):
        make_extractor("superpoint", weights=str(tmp_path / "missing.pth"))
    torch.save({**sd, "extra.weight": torch.zeros(3)}, tmp_path / "extra.pth")
    with pytest.raises(VlocError, match=r"0 missing keys \[\], 1 unexpected \[extra.weight\]"):
        make_extractor("superpoint", weights=str(tmp_path / "extra.pth"))
    torch.save({**sd, "convPb.weight": torch.zeros(64, 256, 1, 1)}, tmp_path / "shape.pth")
    with pytest.raises(VlocError, match="shape.pth do not fit .*convPb.weight"):
        make_extractor("superpoint", weights=str(tmp_path / "shape.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(VlocError, match="not a state dict"):
        make_extractor("superpoint", weights=str(tmp_path / "list.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(VlocError, match="cannot read weights"):
        make_extractor("superpoint", weights=str(tmp_path / "garbage.pth"))
    with pytest.raises(VlocError, match="tile_size must be 0 or >= 64"):
        make_extractor("superpoint", weights=str(path), tile_size=32)
    with pytest.raises(VlocError, match="bad option for features 'superpoint'"):
        make_extractor("superpoint", weights=str(path), octaves=3)
