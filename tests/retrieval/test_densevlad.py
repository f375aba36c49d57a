"""DenseVLAD: dense RootSIFT, the encoder (shape, norm, determinism), options, save/load
and corrupt files, retrieval and a retrieval map on the synthetic room. Small images
(SIZE) and few words keep it fast."""
import json

import h5py
import numpy as np
import pytest

import vloc
from vloc._libs import cv2
from vloc.errors import MapError, VlocError
from vloc.imageio import read_image
from vloc.retrieval import DenseVlad, Vlad, load_global, make_global
from vloc.retrieval.densevlad import dense_rootsift, grid_points

from .test_global_descriptors import neighbour_ranks

SIZE = 320                                   # longer image side in these tests
SMALL = {"image_size": SIZE, "step": 6, "k": 32}


pytestmark = pytest.mark.usefixtures("one_opencv_thread")


@pytest.fixture(scope="module")
def room_descriptors(synthetic_room):
    """Dense RootSIFT (SMALL settings) of every frame of the synthetic room, by name."""
    scene, mapping, query = synthetic_room
    enc = make_global("densevlad", **SMALL)
    return {n: enc.dense(read_image(scene.frame(n).image_path, max_size=SIZE)[0]) for n in [*mapping, *query]}


@pytest.fixture(scope="module")
def fitted(synthetic_room, room_descriptors):
    _, mapping, _ = synthetic_room
    return make_global("densevlad", **SMALL).fit_dense([room_descriptors[n] for n in mapping])


def textured(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.uint8), (0, 0), 1.5)


# --------------------------------------------------------------------------- descriptors
def test_dense_rootsift_grid_contrast_and_rootsift():
    img = textured(120, 160)
    bins = (4, 6)
    grid = grid_points(img.shape, 5, 12)
    assert len(grid) == len(range(12, 148, 5)) * len(range(12, 108, 5))
    d = dense_rootsift(img, bins, 5, 0.0)
    assert d.shape == (2 * len(grid), 128) and d.dtype == np.float32
    assert (d >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)      # sqrt of L1-normalised
    np.testing.assert_array_equal(dense_rootsift(img, bins, 5, 0.0), d)      # deterministic
    # the left half flat: its patches are dropped, the right half's kept
    half = img.copy()
    half[:, :80] = 128
    x_flat = grid[:, 0] + 2 * 6 < 80                                         # patches entirely on the flat half
    kept = dense_rootsift(half, bins, 5, 0.5)
    assert 0 < len(kept) <= 2 * int((~x_flat).sum())
    assert len(kept) >= 2 * int((grid[:, 0] - 2 * 4 >= 80).sum())             # fully textured ones stay
    assert dense_rootsift(np.full((120, 160), 77, np.uint8), bins, 5, 0.0).shape == (0, 128)
    assert dense_rootsift(img[:20], bins, 5, 0.5).shape == (0, 128)          # no patch fits


def test_dense_of_gray_rgb_and_any_size():
    enc = make_global("densevlad", image_size=160)
    gray = textured(240, 320, seed=1)
    d = enc.dense(gray)
    np.testing.assert_array_equal(enc.dense(np.dstack([gray] * 3)), d)
    np.testing.assert_array_equal(enc.dense(gray[..., None]), d)
    small = enc.dense(cv2.resize(gray, (80, 60), interpolation=cv2.INTER_AREA))   # upscaled to 160
    assert abs(len(small) - len(d)) < 0.2 * len(d)
    for bad in (np.zeros((40, 40), np.float32), np.zeros((40, 40, 2), np.uint8), np.zeros((0, 5), np.uint8)):
        with pytest.raises(VlocError, match="uint8 gray or RGB"):
            enc.dense(bad)


# --------------------------------------------------------------------------- the encoder
def test_encoder_shape_norm_determinism(synthetic_room, room_descriptors, fitted):
    scene, mapping, query = synthetic_room
    assert isinstance(fitted, DenseVlad) and fitted.name == "densevlad" and fitted.input == "image"
    assert fitted.dim == 32 * 128
    v = fitted.encode_dense(room_descriptors[query[0]])
    assert v.shape == (fitted.dim,) and v.dtype == np.float32
    assert np.linalg.norm(v) == pytest.approx(1, abs=1e-5)
    again = make_global("densevlad", **SMALL).fit_dense([room_descriptors[n] for n in mapping])
    np.testing.assert_array_equal(again.vlad.vocabulary, fitted.vlad.vocabulary)
    np.testing.assert_array_equal(again.encode_dense(room_descriptors[query[0]]), v)
    img = read_image(scene.frame(query[0]).image_path)[0]                   # 640x480, resized to SIZE inside
    w = fitted.encode_image(img)
    np.testing.assert_array_equal(fitted.encode_image(img), w)
    assert float(w @ v) > 0.95                                              # same image, other decoding size
    np.testing.assert_array_equal(fitted.encode_images([img, img]), np.stack([w, w]))
    flat = fitted.encode_image(np.full((240, 320), 90, np.uint8))
    assert flat.shape == (fitted.dim,) and not flat.any()                  # no texture: the zero vector


def test_options_and_errors(room_descriptors):
    d = next(iter(room_descriptors.values()))
    bad = [({"k": 1}, "k >= 2"), ({"k": 2.5}, "k must be an integer"), ({"step": 0}, "step >= 1"),
           ({"image_size": 30}, "image_size must be in"), ({"bin_sizes": []}, "non-empty list"),
           ({"bin_sizes": "4"}, "non-empty list"), ({"bin_sizes": [4, 0]}, "between 1 and 64"),
           ({"bin_sizes": [4.5]}, "bin_sizes must be an integer"), ({"whiten": -1}, "whiten >= 0"),
           ({"power": 0}, "0 < power <= 1"), ({"min_gradient": -1}, "min_gradient >= 0"),
           ({"min_gradient": "low"}, "must be a number"), ({"seed": True}, "seed must be an integer"),
           ({"pooling": "gem"}, "unknown densevlad options pooling")]
    for options, message in bad:
        with pytest.raises(VlocError, match=message):
            make_global("densevlad", **options)
    assert make_global("densevlad", bin_sizes=[8, 4]).config.bin_sizes == (8, 4)
    with pytest.raises(VlocError, match="not fitted"):
        make_global("densevlad").encode_dense(d)
    with pytest.raises(VlocError, match="non-empty list"):
        make_global("densevlad").fit([])
    with pytest.raises(VlocError, match=r"must be \(N, 128\)"):
        make_global("densevlad", k=4).fit_dense([d[:, :64]])
    with pytest.raises(VlocError, match="fewer than k=128 words"):
        make_global("densevlad").fit_dense([d[:100]])
    with pytest.raises(VlocError, match="densevlad needs a DenseVladConfig"):
        DenseVlad({"k": 4})


# --------------------------------------------------------------------------- save / load
def test_save_load_round_trip_and_corrupt_files(synthetic_room, room_descriptors, fitted, tmp_path):
    _, mapping, query = synthetic_room
    whitened = make_global("densevlad", **SMALL, whiten=8).fit_dense([room_descriptors[n] for n in mapping])
    assert whitened.dim == 8
    for name, enc in (("plain", fitted), ("whitened", whitened)):
        path = tmp_path / f"{name}.h5"
        enc.save(path)
        back = DenseVlad.load(path)
        assert back.config == enc.config and back.dim == enc.dim
        for n in query[:3]:
            np.testing.assert_array_equal(back.encode_dense(room_descriptors[n]), enc.encode_dense(room_descriptors[n]))
    path = tmp_path / "plain.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "vloc-global-descriptor" and f.attrs["name"] == "densevlad"
        assert json.loads(f.attrs["config"])["bin_sizes"] == [4, 6, 8, 10]
    # a missing, truncated, or altered file: MapError saying what is wrong
    with pytest.raises(MapError, match="not found"):
        load_global(tmp_path / "missing.h5")
    data = path.read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(MapError, match="cannot read global descriptor"):
        load_global(tmp_path / "truncated.h5")
    with pytest.raises(MapError, match="holds a 'densevlad' global descriptor, not 'vlad'"):
        Vlad.load(path)

    def altered(name, edit):
        out = tmp_path / f"{name}.h5"
        out.write_bytes((tmp_path / ("whitened.h5" if "whiten" in name else "plain.h5")).read_bytes())
        with h5py.File(out, "r+") as f:
            edit(f)
        return out

    def replace(key, value):
        def edit(f):
            del f[key]
            f.create_dataset(key, data=value)
        return edit

    cases = [("no_vocabulary", lambda f: f.__delitem__("vocabulary"), "corrupt: no vocabulary"),
             ("short_vocabulary", replace("vocabulary", np.zeros((5, 128), np.float32)), "corrupt: vocabulary of"),
             ("nan_vocabulary", replace("vocabulary", np.full((32, 128), np.nan, np.float32)), "NaN"),
             ("narrow_vocabulary", replace("vocabulary", np.zeros((32, 64), np.float32)), "64 dims, not 128"),
             ("no_whiten", lambda f: f.__delitem__("whiten_projection"), "malformed whitening"),
             ("bad_config", lambda f: f.attrs.__setitem__("config", "{not json"), "malformed config"),
             ("bad_option", lambda f: f.attrs.__setitem__("config", json.dumps({"k": 1})), "malformed config"),
             ("unknown_option", lambda f: f.attrs.__setitem__("config", json.dumps({"q": 1})), "malformed config")]
    for name, edit, message in cases:
        with pytest.raises(MapError, match=message):
            load_global(altered(name, edit))


# --------------------------------------------------------------------------- retrieval
def test_retrieval_on_synthetic_room(synthetic_room, room_descriptors, fitted):
    scene, mapping, query = synthetic_room
    db = np.stack([fitted.encode_dense(room_descriptors[n]) for n in mapping])
    q = np.stack([fitted.encode_dense(room_descriptors[n]) for n in query])
    ranks = neighbour_ranks(scene, mapping, query, db, q)
    print(f"\ndensevlad: ranks of the expected neighbour {ranks}")
    # measured: ranks [0, 0, 2, 0, 0, 0] (recall@5 6/6, recall@1 5/6)
    assert sum(r < 5 for r in ranks) >= 5                                  # of 6
    assert sum(r == 0 for r in ranks) >= 4


def test_retrieval_map_with_densevlad(synthetic_room, tmp_path):
    from vloc.localizers import Query
    from vloc.localizers.retrieval import RetrievalMapConfig
    scene, mapping, query = synthetic_room
    frames = [scene.frame(n) for n in mapping[:8]]
    cfg = RetrievalMapConfig(global_descriptor="densevlad", image_size=SIZE, words=16)
    manifest = vloc.build_map(frames, tmp_path / "m", cfg, method="retrieval-top1", progress=False)
    assert manifest["config"]["map"]["global_descriptor"] == "densevlad"
    assert manifest["stats"]["dims"] == 16 * 128 and "head" not in manifest["stats"]
    extractor = manifest["config"]["extractor"]
    assert extractor["name"] == "dense-rootsift" and extractor["resize_max"] == SIZE
    loc = vloc.load_localizer(tmp_path / "m")
    assert isinstance(loc.encoder, DenseVlad) and loc.encoder.config.image_size == SIZE
    q = scene.frame(query[0])
    est = loc.localize(Query(q.name, image_path=q.image_path, camera=q.camera))
    assert est.success and set(est.timings) >= {"read", "features", "retrieval"}
    assert make_global("densevlad").config.image_size == 640                 # image_size=0: the default
    assert RetrievalMapConfig(global_descriptor="densevlad", whiten=4).whiten == 4
    with pytest.raises(VlocError, match="head apply to aliked-gem and aliked-netvlad only, not densevlad"):
        RetrievalMapConfig(global_descriptor="densevlad", head=True)
    with pytest.raises(VlocError, match="whiten apply to aliked-gem, aliked-netvlad and densevlad only, not vlad"):
        RetrievalMapConfig(global_descriptor="vlad", whiten=8)
    with pytest.raises(VlocError, match="densevlad image_size"):
        RetrievalMapConfig(global_descriptor="densevlad", image_size=20)
    with pytest.raises(VlocError, match="unknown global_descriptor 'dense'.*densevlad"):
        RetrievalMapConfig(global_descriptor="dense")
