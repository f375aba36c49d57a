"""Learned extractors (ALIKED, DISK, XFeat): `extract_batch` equals `extract` one by one
(equal sizes in one forward pass, mixed sizes grouped), ALIKED's tiles for large images
against one pass, and the config errors. Small crops keep it fast."""
import numpy as np
import pytest

from vloc._libs import cv2
from vloc.errors import VlocError
from vloc.features import make_extractor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def rgb_full(room_render):
    return room_render


@pytest.fixture(scope="module")
def crops(rgb_full):
    """Three 160x120 RGB crops, one 128x96 crop and one grey 160x120 crop."""
    return [np.ascontiguousarray(rgb_full[60:180, 80:240]), np.ascontiguousarray(rgb_full[0:120, 0:160]),
            np.ascontiguousarray(rgb_full[120:240, 160:320]), np.ascontiguousarray(rgb_full[100:196, 20:148]),
            cv2.cvtColor(np.ascontiguousarray(rgb_full[0:120, 160:320]), cv2.COLOR_RGB2GRAY)]


def _same(a, b, exact=True):
    """The same features; ALIKED's sub-pixel keypoints (a soft-argmax of the score map)
    may move by float rounding when the convolutions run on a batch (`exact=False`)."""
    assert a.image_size == b.image_size and len(a) == len(b)
    if exact:
        assert np.array_equal(a.keypoints, b.keypoints)
    else:
        assert np.allclose(a.keypoints, b.keypoints, rtol=0, atol=1e-3)
    assert np.allclose(a.descriptors, b.descriptors, atol=1e-5)
    assert np.allclose(a.scores, b.scores, atol=1e-6)


@pytest.mark.parametrize("name", ["aliked", "disk", "xfeat"])
def test_batch_equals_one_by_one(crops, name):
    """Mixed sizes and channels: groups of equal tensors, two images per pass."""
    ex = make_extractor(name, max_keypoints=200, batch_size=2)
    sizes = [(320, 240), (160, 120), (160, 120), (128, 96), (480, 360)]
    batch = ex.extract_batch(crops, sizes)
    assert len(batch) == len(crops)
    for img, size, f in zip(crops, sizes, batch):
        assert len(f) >= 30
        _same(f, ex.extract(img, size), exact=name != "aliked")


def test_batch_empty_and_length_mismatch(crops):
    ex = make_extractor("xfeat")
    assert ex.extract_batch([], []) == []
    with pytest.raises(VlocError, match="2 images but 1 original sizes"):
        ex.extract_batch(crops[:2], [(160, 120)])


def _same_set(a, b):
    """The same keypoints (within 1e-3 px) and descriptors (1e-5), in any order: scores
    equal to ~1e-5 may swap places between near-ties."""
    assert len(a) == len(b)
    d = np.linalg.norm(a.keypoints[:, None] - b.keypoints[None], axis=2)
    j = d.argmin(1)
    assert d[np.arange(len(a)), j].max() <= 1e-3 and len(set(j.tolist())) == len(a)
    assert np.allclose(a.descriptors, b.descriptors[j], atol=1e-5)
    assert np.allclose(a.scores, b.scores[j], atol=1e-4)


def test_aliked_tiles_match_one_pass(rgb_full, crops):
    """320x240 (padded to 320x256) in tiles of 128: 3x2 tiles, same features as one pass."""
    one = make_extractor("aliked", max_keypoints=500)
    tiled = make_extractor("aliked", max_keypoints=500, tile_size=128)
    a, b = one.extract(rgb_full, (320, 240)), tiled.extract(rgb_full, (320, 240))
    assert len(a) >= 200
    _same_set(a, b)
    grey = crops[4]
    _same_set(one.extract(grey, (160, 120)), make_extractor("aliked", max_keypoints=500, tile_size=64)
              .extract(grey, (160, 120)))
    # batches with tiled images: those one by one, the others together
    c = tiled.extract_batch([rgb_full, crops[0], crops[1]], [(320, 240), (160, 120), (160, 120)])
    _same(c[0], b)
    _same(c[1], tiled.extract(crops[0], (160, 120)), exact=False)


@pytest.mark.parametrize("name,options,message", [
    ("aliked", {"batch_size": 0}, "aliked: batch_size must be >= 1, got 0"),
    ("disk", {"batch_size": 0}, "disk: batch_size must be >= 1, got 0"),
    ("xfeat", {"batch_size": -1}, "xfeat: batch_size must be >= 1, got -1"),
    ("aliked", {"tile_size": 32}, r"aliked: tile_size must be 0 \(never\) or >= 64, got 32"),
    ("aliked", {"max_keypoints": -1}, "aliked: max_keypoints must be >= 0"),
])
def test_config_errors(name, options, message):
    with pytest.raises(VlocError, match=message):
        make_extractor(name, **options)
