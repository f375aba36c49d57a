"""DenseVLAD (Torii et al., "24/7 place recognition by view synthesis", CVPR 2015 /
TPAMI 2018): RootSIFT computed on a dense regular grid at several patch sizes,
VLAD-aggregated over a vocabulary learned on the map's own images, optionally
PCA-whitened on the map.

    enc = make_densevlad(k=128).fit(images)        # images: uint8 gray/RGB arrays
    v = enc.encode_image(img)                      # (k * 128,) unit float32

Library parts: OpenCV computes the SIFT descriptors at the given keypoints (nothing
is detected) and the gradients of the contrast test; FAISS trains the k-means
vocabulary and assigns words (`vocabulary.py`, through `Vlad`). Written here: the
grid, the low-contrast filter (Torii drops flat patches), RootSIFT, the per-image
training sample and save/load. VLAD residuals and normalisation (intra, power, L2)
are `global_descriptors.Vlad`; the whitening is `pooling.Whitening`.

`dense()` + `fit_dense()` + `encode_dense()` are the same steps split as in
`image_global.DenseGlobal`, so a map builder computes each image's descriptors once.
Saved as one HDF5 file (format tag, name, config, arrays; no pickle)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from .._libs import cv2
from ..errors import MapError, VlocError
from .global_descriptors import Vlad, VladConfig, write_encoder_file
from .image_global import ImageEncoder
from .pooling import Whitening

SIFT_DIM = 128


@dataclass(frozen=True)
class DenseVladConfig:
    image_size: int = 640                   # the image is resized (up or down) to this longer side
    bin_sizes: tuple = (4, 6, 8, 10)        # SIFT bin widths in px (a patch is 4 x 4 bins), one grid each
    step: int = 8                           # grid step in px (Torii: 2; 8 gives ~17k descriptors at 640x480)
    min_gradient: float = 0.5               # drop patches of lower mean gradient (grey levels per px)
    k: int = 128                            # visual words; the vector has k * 128 dims
    max_train: int = 100_000                # descriptors sampled for the k-means
    niter: int = 20
    power: float = 0.5                      # VLAD power normalisation (signed square root)
    whiten: int = 0                         # PCA-whitening to this many dims, learned on the map (0: off)
    seed: int = 0

    def __post_init__(self):
        set_ = object.__setattr__
        for f in ("image_size", "step", "k", "max_train", "niter", "whiten", "seed"):
            set_(self, f, _integer(f, getattr(self, f)))
        bins = self.bin_sizes
        if isinstance(bins, (str, bytes)) or not hasattr(bins, "__len__") or len(bins) == 0:
            raise VlocError(f"densevlad option bin_sizes must be a non-empty list of integers, got {bins!r}")
        set_(self, "bin_sizes", tuple(_integer("bin_sizes", b) for b in bins))
        for f in ("min_gradient", "power"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
                raise VlocError(f"densevlad option {f} must be a number, got {v!r}")
            set_(self, f, float(v))
        if min(self.bin_sizes) < 1 or max(self.bin_sizes) > 64:
            raise VlocError(f"densevlad bin_sizes must be between 1 and 64 px, got {list(self.bin_sizes)}")
        if self.image_size < 4 * max(self.bin_sizes) + 1 or self.image_size > 8192:
            raise VlocError(f"densevlad image_size must be in [{4 * max(self.bin_sizes) + 1}, 8192] "
                            f"(a patch of the largest bin size must fit), got {self.image_size}")
        if self.step < 1 or self.k < 2 or self.max_train < 1 or self.niter < 1 or self.whiten < 0 or self.seed < 0:
            raise VlocError(f"densevlad needs step >= 1, k >= 2, max_train >= 1, niter >= 1, whiten >= 0, "
                            f"seed >= 0 (got step={self.step} k={self.k} max_train={self.max_train} "
                            f"niter={self.niter} whiten={self.whiten} seed={self.seed})")
        if self.min_gradient < 0 or not 0 < self.power <= 1:
            raise VlocError(f"densevlad needs min_gradient >= 0 and 0 < power <= 1 "
                            f"(got min_gradient={self.min_gradient} power={self.power})")

    def to_dict(self) -> dict:
        return {**asdict(self), "bin_sizes": list(self.bin_sizes)}


def _integer(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise VlocError(f"densevlad option {name} must be an integer, got {v!r}")
    return int(v)


# --------------------------------------------------------------------------- descriptors
def gray_at_size(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 gray image with its longer side resized (up or down) to `size`."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))) \
            or min(img.shape[:2]) < 1:
        raise VlocError(f"densevlad needs a uint8 gray or RGB image, got {img.dtype} of shape {img.shape}")
    gray = img if img.ndim == 2 else (img[..., 0] if img.shape[2] == 1 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    h, w = gray.shape
    s = size / max(h, w)
    if s == 1:
        return np.ascontiguousarray(gray)
    new = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(gray, new, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def grid_points(shape: tuple[int, int], step: int, margin: int) -> np.ndarray:
    """(N, 2) float32 x, y of a regular grid `margin` px inside the image (empty if none fits)."""
    h, w = shape
    xs = np.arange(margin, w - margin, step, dtype=np.float32)
    ys = np.arange(margin, h - margin, step, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    """(h, w) float32 gradient magnitude in grey levels per px (Sobel / 8)."""
    g = gray.astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8
    return np.sqrt(gx * gx + gy * gy)


def dense_rootsift(gray: np.ndarray, bin_sizes: Sequence[int], step: int, min_gradient: float) -> np.ndarray:
    """(N, 128) float32 RootSIFT of upright patches on one grid (shared by all sizes: its
    margin fits the largest patch), one descriptor per point and bin size; patches
    whose mean gradient is below `min_gradient` are dropped."""
    pts = grid_points(gray.shape, step, 2 * max(bin_sizes))
    out = [np.zeros((0, SIFT_DIM), np.float32)]
    if len(pts) == 0:
        return out[0]
    sift = cv2.SIFT_create()
    ix, iy = pts[:, 0].astype(np.intp), pts[:, 1].astype(np.intp)
    magnitude = gradient_magnitude(gray) if min_gradient > 0 else None
    for b in bin_sizes:
        keep = pts
        if magnitude is not None:            # mean over the patch (4 x 4 bins)
            keep = pts[cv2.boxFilter(magnitude, -1, (4 * b, 4 * b))[iy, ix] >= min_gradient]
        if len(keep) == 0:
            continue
        # OpenCV's descriptor bin is 1.5 x the keypoint size (SIFT_DESCR_SCL_FCTR * size / 2)
        kps = cv2.KeyPoint_convert(keep, size=b / 1.5)
        _, d = sift.compute(gray, kps)
        if d is not None:
            out.append(d.astype(np.float32))
    d = np.concatenate(out)
    l1 = d.sum(axis=1, keepdims=True)
    d = d[l1[:, 0] > 1e-6]                    # all-zero patches: no gradient at all
    return np.sqrt(d / d.sum(axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- encoder
class DenseVlad(ImageEncoder):
    """`densevlad` (see the module doc). Vectors are unit-L2 float32; an image with no
    textured patch encodes to the zero vector (as `Vlad` of no descriptors)."""

    name: ClassVar[str] = "densevlad"
    kind: ClassVar[str] = "'densevlad'"
    input: ClassVar[str] = "image"           # encode_image(image), as DenseGlobal

    def __init__(self, config: DenseVladConfig | None = None):
        self.config = DenseVladConfig() if config is None else config
        if not isinstance(self.config, DenseVladConfig):
            raise VlocError(f"densevlad needs a DenseVladConfig, got {type(self.config).__name__}")
        c = self.config
        self.vlad = Vlad(VladConfig(k=c.k, seed=c.seed, max_train=c.max_train, niter=c.niter, power=c.power))
        self.whitening: Whitening | None = None

    @property
    def fitted(self) -> bool:
        return self.vlad.fitted and (not self.config.whiten or self.whitening is not None)

    def _require_fit(self) -> None:
        if not self.fitted:
            raise VlocError("global descriptor 'densevlad' is not fitted: call fit() or load() first")

    @property
    def pooled_dim(self) -> int:
        return self.config.k * SIFT_DIM

    @property
    def dim(self) -> int:
        self._require_fit()
        return self.whitening.dim if self.whitening is not None else self.pooled_dim

    def extractor_config(self) -> dict:
        """What a map's manifest records as its 'extractor'."""
        c = self.config
        return {"name": "dense-rootsift", "resize_max": c.image_size, "bin_sizes": list(c.bin_sizes),
                "step": c.step, "min_gradient": c.min_gradient}

    # steps ---------------------------------------------------------------
    def dense(self, image: np.ndarray) -> np.ndarray:
        """(N, 128) float32 dense RootSIFT of a uint8 gray or RGB image."""
        c = self.config
        return dense_rootsift(gray_at_size(image, c.image_size), c.bin_sizes, c.step, c.min_gradient)

    def _check(self, descriptors) -> np.ndarray:
        d = np.asarray(descriptors, np.float32)
        if d.ndim != 2 or d.shape[1] != SIFT_DIM:
            raise VlocError(f"densevlad: descriptors must be (N, {SIFT_DIM}), got shape {d.shape}")
        return d

    def fit_dense(self, descriptor_sets: Sequence[np.ndarray], poses=None) -> DenseVlad:
        """Vocabulary (and whitening) from the mapping images' `dense()` outputs.
        `poses` is accepted for the common interface and unused."""
        if isinstance(descriptor_sets, np.ndarray) or len(descriptor_sets) == 0:
            raise VlocError("densevlad.fit needs a non-empty list of images (or their dense descriptors)")
        sets = [self._check(d) for d in descriptor_sets]
        total = sum(len(d) for d in sets)
        if total < self.config.k:
            raise VlocError(f"densevlad: the mapping images have {total} textured patches, fewer than "
                            f"k={self.config.k} words (use fewer words, a smaller step or min_gradient)")
        self.whitening = None
        self.vlad.fit([_sample(sets, max(self.config.max_train, self.config.k), self.config.seed)])
        if self.config.whiten:
            self.whitening = Whitening.fit(np.stack([self.vlad.encode(d) for d in sets]), self.config.whiten)
        return self

    def encode_dense(self, descriptors: np.ndarray) -> np.ndarray:
        """(dim,) unit float32 vector of one image's dense descriptors (zero if none)."""
        self._require_fit()
        v = self.vlad.encode(self._check(descriptors))
        if self.whitening is None:
            return v
        return self.whitening(v[None])[0] if v.any() else np.zeros(self.dim, np.float32)

    # persistence ---------------------------------------------------------
    def save(self, path) -> None:
        self._require_fit()
        path = Path(path)
        arrays = {"vocabulary": self.vlad.vocabulary}
        if self.whitening is not None:
            arrays["whiten_mean"], arrays["whiten_projection"] = self.whitening.mean, self.whitening.projection
        write_encoder_file(path, self.name, self.config.to_dict(), arrays)

    @classmethod
    def _from_file(cls, path, config, arrays: dict) -> DenseVlad:
        """Called by `load_global` once the file's format, version and name are checked."""
        try:
            if not isinstance(config, dict):
                raise ValueError("not a dict")
            from ..configs import check_keys
            check_keys(DenseVladConfig, config, "densevlad options")
            enc = cls(DenseVladConfig(**config))
        except (TypeError, ValueError, VlocError) as e:
            raise MapError(f"global descriptor {path} has a malformed config: {e}") from None
        bad = enc.vlad._check_arrays(arrays)
        if bad is None and arrays["vocabulary"].shape[1] != SIFT_DIM:
            bad = f"vocabulary of {arrays['vocabulary'].shape[1]} dims, not {SIFT_DIM}"
        if bad is None and enc.config.whiten:
            mean, proj = arrays.get("whiten_mean"), arrays.get("whiten_projection")
            if mean is None or proj is None or mean.shape != (enc.pooled_dim,) or proj.ndim != 2 \
                    or proj.shape[0] != enc.pooled_dim or not 1 <= proj.shape[1] <= enc.config.whiten \
                    or not (np.all(np.isfinite(mean)) and np.all(np.isfinite(proj))):
                bad = "missing or malformed whitening"
        if bad:
            raise MapError(f"global descriptor {path} is corrupt: {bad}")
        enc.vlad._set_arrays(arrays)
        if enc.config.whiten:
            enc.whitening = Whitening(arrays["whiten_mean"], arrays["whiten_projection"])
        return enc

    def __repr__(self) -> str:
        state = f"dim={self.dim}" if self.fitted else "not fitted"
        return f"DenseVlad({self.config}, {state})"


def _sample(sets: list[np.ndarray], max_train: int, seed: int) -> np.ndarray:
    """About `max_train` rows (at least that many if there are), the same share from
    every image (seeded)."""
    keep = min(1.0, max_train / max(sum(len(d) for d in sets), 1))
    rng = np.random.default_rng(seed)
    out = []
    for d in sets:
        n = min(len(d), int(np.ceil(keep * len(d))))
        out.append(d[np.sort(rng.choice(len(d), size=n, replace=False))] if n < len(d) else d)
    return np.concatenate(out)


def make_densevlad(**options) -> DenseVlad:
    """An unfitted `densevlad` with config overrides (unknown keys: VlocError)."""
    from ..configs import check_keys
    options = {k: v for k, v in options.items() if k != "name"}
    check_keys(DenseVladConfig, options, "densevlad options")
    return DenseVlad(DenseVladConfig(**options))
