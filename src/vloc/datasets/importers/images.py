"""A plain folder of photographs without poses: the mapping frames of a map made by
structure-from-motion (`vloc map photos/ -o maps/home`).

Detected only when no other format matches. Every image file under the folder
(sub-folders too, hidden ones skipped; 16-bit or float single-channel images, depth
maps, left out) is a frame named by its path relative to the
folder, in sorted order. Pixels are taken as stored (EXIF orientation ignored).

Intrinsics are a prior that bundle adjustment refines (`Frame.camera_prior`):
SIMPLE_RADIAL with the principal point at the centre and the focal length from the
EXIF 35 mm equivalent (f = f35 / 43.27 mm x the image diagonal in pixels), else
COLMAP's guess of 1.2 x the longer side. Images with equal priors (size and focal)
share one camera, refined together. The scene has no metric scale and no ground
truth; its one split, `all`, maps every image.
"""
from __future__ import annotations

import math
from pathlib import Path

from ...errors import DataError
from ...geometry import Camera
from ...imageio import IMAGE_SUFFIXES
from ..registry import register
from ..scene import Frame, Scene

DEFAULT_FOCAL_FACTOR = 1.2          # x the longer side, without EXIF (COLMAP's default)
FULL_FRAME_DIAGONAL_MM = 43.27      # 36 x 24 mm; the 35 mm equivalent refers to it
_EXIF_IFD, _F35 = 0x8769, 0xA405


def _image_files(root: Path):
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not any(s.startswith(".") for s in rel.parts):
            yield p


def detect(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and next(_image_files(path), None) is not None


NOT_PHOTOS = ("I;16", "I;16B", "I", "F")    # 16-bit / float single channel: depth maps


def exif_focal(path: Path) -> tuple[tuple[int, int], float | None, str]:
    """((width, height) as stored, the EXIF 35 mm equivalent focal length or None, PIL mode)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            size, exif, mode = im.size, im.getexif(), im.mode
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    f35 = exif.get_ifd(_EXIF_IFD).get(_F35)
    try:
        f35 = float(f35) if f35 is not None and float(f35) > 0 else None
    except (TypeError, ValueError):
        f35 = None
    return size, f35, mode


def prior_camera(size: tuple[int, int], f35: float | None) -> Camera:
    w, h = size
    if f35 is not None:
        f = f35 / FULL_FRAME_DIAGONAL_MM * math.hypot(w, h)
    else:
        f = DEFAULT_FOCAL_FACTOR * max(w, h)
    return Camera("SIMPLE_RADIAL", w, h, (f, w / 2.0, h / 2.0, 0.0))


def load(path: Path) -> Scene:
    root = Path(path)
    files = list(_image_files(root))
    if not files:
        raise DataError(f"no image files under {root} ({', '.join(IMAGE_SUFFIXES)})")
    frames, with_exif, depth_like = [], 0, 0
    for p in files:
        size, f35, mode = exif_focal(p)
        if mode in NOT_PHOTOS:
            depth_like += 1
            continue
        with_exif += f35 is not None
        frames.append(Frame(name=p.relative_to(root).as_posix(), camera=prior_camera(size, f35),
                            image_path=p, camera_prior=True))
    notes = [f"no poses: a map is made by structure-from-motion (its own world frame and scale); "
             f"focal lengths are priors refined by bundle adjustment, from EXIF for {with_exif} of "
             f"{len(frames)} images, else {DEFAULT_FOCAL_FACTOR} x the longer side"]
    if depth_like:
        notes.append(f"{depth_like} 16-bit or float single-channel images (depth maps) skipped")
    if not frames:
        raise DataError(f"no photographs under {root}: only depth-like images")
    names = [f.name for f in frames]
    return Scene(name=root.resolve().name, root=root, format="images", frames=frames,
                 official_splits={"all": (names, [])}, metric=False, notes=notes)


register("images", detect, load)
