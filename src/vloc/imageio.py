"""Image reading with clear errors. JPEGs are decoded at 1/2, 1/4 or 1/8 size
directly (DCT scaling) when a smaller image is asked for, which is much faster.

Pixels are read as stored: an EXIF orientation tag is ignored, as COLMAP does, so
that an image's size, its camera and its pose all describe the sensor (OpenCV would
otherwise rotate a full-size read but not a reduced one)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._libs import cv2
from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")   # what a folder of images holds

_AS_STORED = cv2.IMREAD_IGNORE_ORIENTATION
_REDUCED = {2: (cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_COLOR_2),
            4: (cv2.IMREAD_REDUCED_GRAYSCALE_4, cv2.IMREAD_REDUCED_COLOR_4),
            8: (cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_REDUCED_COLOR_8)}


def image_size(path) -> tuple[int, int]:
    """(width, height) without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def read_image(path, grayscale: bool = False, max_size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Read an image (uint8, RGB or gray). If `max_size` is set, the longer side is
    reduced to at most `max_size`. Returns (image, (original width, original height))."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"image file is empty: {path}")
    factor, orig = 1, None
    if max_size is not None and path.suffix.lower() in (".jpg", ".jpeg"):
        orig = image_size(path)
        factor = next((f for f in (8, 4, 2) if max(orig) / f >= max_size), 1)
    if factor > 1:
        img = cv2.imread(str(path), _REDUCED[factor][0 if grayscale else 1] | _AS_STORED)
    else:
        img = cv2.imread(str(path), (cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR) | _AS_STORED)
    if img is None or img.size == 0:
        raise DataError(f"cannot decode image (corrupt or unsupported): {path}")
    if orig is None:
        orig = (img.shape[1], img.shape[0])
    if not grayscale and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if max_size is not None and max(img.shape[:2]) > max_size:
        s = max_size / max(orig)
        new = (max(1, round(orig[0] * s)), max(1, round(orig[1] * s)))
        img = cv2.resize(img, new, interpolation=cv2.INTER_AREA)
    return img, orig


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) to uint8 RGB pixels, as stored."""
    if not data:
        raise DataError(f"{name} is empty")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | _AS_STORED)
    if img is None or img.size == 0:
        raise DataError(f"cannot decode {name} (corrupt or unsupported format)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_max(img: np.ndarray, max_size: int) -> np.ndarray:
    """Downscale so that the longer side is at most `max_size` (area interpolation)."""
    h, w = img.shape[:2]
    if max(h, w) <= max_size:
        return img
    s = max_size / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def read_rgb(image_path, max_size: int, name: str, camera=None, image: np.ndarray | None = None) -> np.ndarray:
    """A colour image (or the given pixels) at most `max_size` on its longer side,
    checked against its camera's size."""
    if image is not None:
        img, size = resize_max(image, max_size), (image.shape[1], image.shape[0])
    else:
        if image_path is None:
            raise DataError(f"image {name} has no pixels and no path")
        img, size = read_image(image_path, grayscale=False, max_size=max_size)
    if camera is not None and (camera.width, camera.height) != size:
        raise DataError(f"{name}: image {image_path or ''} is {size[0]}x{size[1]} but its camera says "
                        f"{camera.width}x{camera.height}")
    return img
