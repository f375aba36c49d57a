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

from pathlib import Path

from ...errors import DataError
from ...geometry.exif import DEFAULT_FOCAL_FACTOR, exif_focal, prior_camera
from ...imageio import IMAGE_SUFFIXES
from ..registry import register
from ..scene import Frame, Scene


def _image_files(root: Path):
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not any(s.startswith(".") for s in rel.parts):
            yield p


def detect(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and next(_image_files(path), None) is not None


NOT_PHOTOS = ("I;16", "I;16B", "I", "F")    # 16-bit / float single channel: depth maps


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
