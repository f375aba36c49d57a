"""Intrinsics from a photo's EXIF: the 35 mm equivalent focal length, converted with
the image diagonal (f = f35 / 43.27 mm x the diagonal in pixels; 43.27 mm is the
diagonal of a 36 x 24 mm frame). Used as the prior of photos without a calibration
(the `images` importer) and for queries given `--camera exif`."""
from __future__ import annotations

import io
import math
from pathlib import Path

from ..errors import DataError
from .camera import Camera

DEFAULT_FOCAL_FACTOR = 1.2          # x the longer side, without EXIF (COLMAP's default)
FULL_FRAME_DIAGONAL_MM = 43.27      # 36 x 24 mm; the 35 mm equivalent refers to it
_EXIF_IFD, _F35 = 0x8769, 0xA405
EXIF = "exif"                       # the camera option that reads each query's EXIF


def exif_focal(source: Path | bytes, what: str | None = None) -> tuple[tuple[int, int], float | None, str]:
    """((width, height) as stored, the EXIF 35 mm equivalent focal length or None, PIL
    mode) of an image file or encoded image bytes."""
    from PIL import Image, UnidentifiedImageError
    if what is None:
        what = "image" if isinstance(source, bytes) else f"image {source}"
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            size, exif, mode = im.size, im.getexif(), im.mode
    except FileNotFoundError:
        raise DataError(f"{what} not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read {what}: {e}") from None
    f35 = exif.get_ifd(_EXIF_IFD).get(_F35)
    try:
        f35 = float(f35) if f35 is not None and float(f35) > 0 else None
    except (TypeError, ValueError):
        f35 = None
    return size, f35, mode


def prior_camera(size: tuple[int, int], f35: float | None) -> Camera:
    """SIMPLE_RADIAL (k = 0) with the principal point at the centre and the focal
    length from the 35 mm equivalent, else 1.2 x the longer side."""
    w, h = size
    if f35 is not None:
        f = f35 / FULL_FRAME_DIAGONAL_MM * math.hypot(w, h)
    else:
        f = DEFAULT_FOCAL_FACTOR * max(w, h)
    return Camera("SIMPLE_RADIAL", w, h, (f, w / 2.0, h / 2.0, 0.0))


def camera_from_exif(source: Path | bytes, what: str | None = None) -> Camera:
    """A query's camera from its EXIF focal length (`--camera exif`): SIMPLE_PINHOLE,
    principal point at the centre. A clear error when the image has none."""
    if what is None:
        what = "image" if isinstance(source, bytes) else f"image {source}"
    size, f35, _ = exif_focal(source, what)
    if f35 is None:
        raise DataError(f"{what} has no EXIF focal length (35 mm equivalent): give the "
                        "camera as 'MODEL WIDTH HEIGHT PARAMS...', or none to estimate the focal length")
    cam = prior_camera(size, f35)
    return Camera("SIMPLE_PINHOLE", cam.width, cam.height, cam.params[:3])


def camera_option(spec: str | None) -> Camera | str | None:
    """`--camera` / the service's `camera`: None (the focal length unknown), a Camera
    ('MODEL WIDTH HEIGHT PARAMS...'), or EXIF (read per image by `query_camera`)."""
    if spec is None or not spec.strip():
        return None
    return EXIF if spec.strip().lower() == EXIF else Camera.from_string(spec)


def query_camera(option: Camera | str | None, source: Path | bytes, what: str | None = None) -> Camera | None:
    """The camera of one query image under `camera_option`'s result."""
    return camera_from_exif(source, what) if option == EXIF else option
