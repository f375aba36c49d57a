"""Textures of the synthetic worlds: photographs bundled with scikit-image and the
mip-mapped atlas the renderer samples them from."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..._libs import cv2
from ...errors import DataError

__all__ = ["PHOTOS", "TextureAtlas", "load_photo", "texture_atlas"]


# Images shipped inside the scikit-image wheel (checked with scikit-image 0.26: each
# loads from the package folder, with its hash verified, without pooch or network).
# skimage.data's other images (eagle, lily, kidney, cells3d, ...) need a download.
PHOTOS: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "logo",
    "moon", "page", "retina", "rocket", "text",
)


def load_photo(name: str) -> np.ndarray:
    """A photograph bundled with scikit-image as HxWx3 uint8 RGB (gray is repeated,
    transparency is composited over white). Never downloads anything."""
    if name not in PHOTOS:
        raise DataError(f"unknown texture {name!r}; available offline: {', '.join(PHOTOS)}")
    import skimage.data
    try:
        img = np.asarray(getattr(skimage.data, name)())
    except Exception as e:  # noqa: BLE001  (a broken or stripped scikit-image install)
        raise DataError(f"texture {name!r} cannot be loaded from scikit-image: {e}") from None
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64) * (255.0 if img.max() <= 1 else 1.0)), 0, 255)
        img = img.astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        alpha = img[..., 3:].astype(np.float32) / 255.0
        img = np.round(img[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(img[..., :3])


def _square(img: np.ndarray, size: int) -> np.ndarray:
    """Square crop (very elongated images are first repeated along their short side)
    resized to size x size."""
    h, w = img.shape[:2]
    if max(h, w) / min(h, w) >= 1.6:
        k = round(max(h, w) / min(h, w))
        img = np.concatenate([img] * k, axis=0 if h < w else 1)
        h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    img = np.ascontiguousarray(img[y0:y0 + s, x0:x0 + s])
    if s == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)


class TextureAtlas:
    """Square photos of `size` texels with all their mip levels, packed as RGBA
    uint32 in one flat array for fast gathers. Level l holds (size >> l)^2 texels
    per photo, at `offsets[l] + (photo * S_l + row) * S_l + col`."""

    def __init__(self, names: tuple[str, ...], size: int = 512):
        if size < 2 or size & (size - 1):
            raise DataError(f"texture size must be a power of two >= 2, got {size}")
        self.names = tuple(names)
        self.size = int(size)
        self.n_levels = int(math.log2(size)) + 1
        imgs = [_square(load_photo(n), size) for n in self.names]
        chunks, offsets, off = [], [], 0
        for lev in range(self.n_levels):
            s = size >> lev
            rgba = np.full((len(imgs), s, s, 4), 255, np.uint8)
            rgba[..., :3] = np.stack(imgs)
            chunks.append(rgba.reshape(-1, 4).view(np.uint32).ravel())
            offsets.append(off)
            off += len(imgs) * s * s
            if s > 1:
                imgs = [cv2.resize(im, (s // 2, s // 2), interpolation=cv2.INTER_AREA) for im in imgs]
        self.data = np.concatenate(chunks)
        self.offsets = np.asarray(offsets, np.int64)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise DataError(f"texture {name!r} is not in this atlas") from None


@lru_cache(maxsize=4)
def texture_atlas(names: tuple[str, ...], size: int = 512) -> TextureAtlas:
    """The (cached) atlas of the given photos."""
    return TextureAtlas(tuple(names), size)

