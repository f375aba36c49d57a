"""Learned local features (kornia + packaged weights): the extractor contract, determinism,
weights from a file and the errors for a missing or wrong one. Small crops keep it fast."""
import numpy as np
import pytest
import torch

from vloc._libs import cv2
from vloc.errors import VlocError
from vloc.features import LOCAL_FEATURES, make_extractor
from vloc.features.torch_models import to_original
from vloc.features.weights import load_state_dict

LEARNED = ["aliked", "disk", "xfeat"]
DIMS = {"aliked": 128, "disk": 128, "xfeat": 64}


@pytest.fixture(scope="module")
def rgb_crop(room_render):
    """A 160x120 RGB crop of the 320x240 render of the synthetic room."""
    return np.ascontiguousarray(room_render[60:180, 80:240])


@pytest.fixture(scope="module")
def crop(rgb_crop):
    """The same crop in gray."""
    return cv2.cvtColor(rgb_crop, cv2.COLOR_RGB2GRAY)


def test_registered():
    assert set(LEARNED) <= set(LOCAL_FEATURES)
    with pytest.raises(VlocError, match="unknown ALIKED model 'n64'"):
        make_extractor("aliked", model="n64")


@pytest.mark.parametrize("name", LEARNED)
def test_contract_and_determinism(crop, name):
    ex = make_extractor(name, max_keypoints=300)
    original = (320, 240)                        # as if the crop were the image downscaled by 2
    f = ex.extract(crop, original)
    n = len(f)
    assert 50 <= n <= 300 and f.image_size == original
    assert f.keypoints.shape == (n, 2) and f.keypoints.dtype == np.float32
    assert f.descriptors.shape == (n, DIMS[name]) and f.descriptors.dtype == np.float32
    assert f.scores.shape == f.scales.shape == (n,)
    assert np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-5)
    assert np.all(np.diff(f.scores) <= 0)                            # strongest first
    assert np.all(f.keypoints > 0) and np.all(f.keypoints < original)   # inside the original image
    assert ex.config_dict()["name"] == name
    # a second extractor of the same config (cached network) and an RGB input give the same
    g = make_extractor(name, max_keypoints=300).extract(np.repeat(crop[..., None], 3, axis=2), original)
    for a, b in zip((f.keypoints, f.descriptors, f.scores), (g.keypoints, g.descriptors, g.scores)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["aliked", "disk"])
def test_colour_input_as_trained(rgb_crop, crop, name):
    """ALIKED and DISK see RGB (as trained; maps and queries are read in colour for
    them); with color=False, or for XFeat, an RGB image gives the grey image's features."""
    from vloc.features.base import reads_color
    colour, grey = make_extractor(name, max_keypoints=300), make_extractor(name, max_keypoints=300, color=False)
    assert reads_color(colour) and not reads_color(grey) and not reads_color(make_extractor("xfeat"))
    a, b = colour.extract(rgb_crop, (160, 120)), colour.extract(crop, (160, 120))
    assert len(a) >= 50 and not np.array_equal(a.descriptors[:20], b.descriptors[:20])
    c = grey.extract(rgb_crop, (160, 120))
    assert np.array_equal(c.keypoints, b.keypoints) and np.array_equal(c.descriptors, b.descriptors)


def test_scaling_to_the_original_image(crop):
    """Keypoints are reported as vloc pixels (origin at the corner) of the original image."""
    ex = make_extractor("aliked", max_keypoints=200)
    a, b = ex.extract(crop, (160, 120)), ex.extract(crop, (480, 360))
    assert np.allclose(b.keypoints, a.keypoints * 3, atol=1e-4)
    assert np.allclose(to_original(np.array([[0.0, 0.0], [9.0, 4.0]]), (120, 160), (320, 240)),
                       [[1.0, 1.0], [19.0, 9.0]])


def test_xfeat_pads_instead_of_resizing(crop):
    """XFeat sizes must be multiples of 32: padding (not kornia's resizing) keeps the
    keypoints of an image where they are when rows are added below."""
    ex = make_extractor("xfeat", max_keypoints=0)
    top = crop[:96]                                       # 160x96: no padding
    grown = crop[:112]                                    # 160x112: padded to 128
    a, b = ex.extract(top, (160, 96)), ex.extract(grown, (160, 112))
    a_kp = {tuple(k) for k in a.keypoints[a.keypoints[:, 1] < 80]}
    b_kp = {tuple(k) for k in b.keypoints[b.keypoints[:, 1] < 80]}
    assert len(a_kp) > 20 and len(a_kp & b_kp) >= 0.8 * len(a_kp)


@pytest.mark.parametrize("name", LEARNED)
def test_blank_image(name):
    f = make_extractor(name).extract(np.zeros((64, 96), np.uint8), (96, 64))
    n = len(f)          # none, or a few from DISK's zero padding
    assert n <= 10 and f.keypoints.shape == (n, 2) and f.descriptors.shape == (n, DIMS[name])


def test_weights_from_a_file(crop, tmp_path):
    path = tmp_path / "aliked-n32.pth"
    torch.save(load_state_dict("aliked-n32"), path)
    a = make_extractor("aliked", model="n32", max_keypoints=200).extract(crop, (160, 120))
    b = make_extractor("aliked", model="n32", max_keypoints=200, weights=str(path)).extract(crop, (160, 120))
    assert len(a) > 20 and np.array_equal(a.keypoints, b.keypoints) and np.array_equal(a.descriptors, b.descriptors)


def test_missing_weights_file_names_it(crop, tmp_path):
    missing = tmp_path / "nowhere" / "disk.pth"
    with pytest.raises(VlocError, match=r"weights for disk not found: .*nowhere/disk\.pth"):
        make_extractor("disk", weights=str(missing)).extract(crop, (160, 120))


def test_wrong_architecture_is_a_clear_error(crop, tmp_path):
    # other layer names: DISK's weights for ALIKED
    disk = tmp_path / "disk.pth"
    torch.save(load_state_dict("disk"), disk)
    with pytest.raises(VlocError, match=r"disk\.pth do not fit ALIKED .*missing keys"):
        make_extractor("aliked", weights=str(disk)).extract(crop, (160, 120))
    # same names, other shapes: ALIKED-t16 weights for the n16 network
    t16 = tmp_path / "t16.pth"
    torch.save(load_state_dict("aliked-t16"), t16)
    with pytest.raises(VlocError, match=r"t16\.pth do not fit ALIKED.*size mismatch"):
        make_extractor("aliked", model="n16", weights=str(t16)).extract(crop, (160, 120))
    # not a state dict at all
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(VlocError, match="cannot read weights"):
        make_extractor("xfeat", weights=str(junk)).extract(crop, (160, 120))


def test_map_extraction_in_threads_matches_sequential(crop, tmp_path):
    """maps/extract.py runs non-single-threaded extractors in 2 decoding threads."""
    from vloc.datasets import Frame
    from vloc.geometry import Camera, Pose
    from vloc.maps.extract import extract_frames
    frames = []
    for i, img in enumerate([crop, crop[:, ::-1], crop[::-1], crop.T.copy()[:120]]):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), np.ascontiguousarray(img))
        h, w = img.shape[:2]
        frames.append(Frame(f"{i}.png", Camera.from_string(f"PINHOLE {w} {h} 100 100 {w / 2} {h / 2}"), p,
                            Pose.identity()))
    ex = make_extractor("aliked", max_keypoints=200)
    threaded = extract_frames(ex, frames, resize_max=160, progress=False)
    for fr in frames:
        seq = ex.extract(cv2.imread(str(fr.image_path), cv2.IMREAD_GRAYSCALE), (fr.camera.width, fr.camera.height))
        assert np.array_equal(threaded[fr.name].keypoints, seq.keypoints)
