"""Strecha et al. (CVPR 2008) multi-view stereo scenes, e.g. fountain-P11, Herz-Jesus-P8.

Layout: `<scene>/images/<name>.jpg` (or .png) and `<scene>/gt_dense_cameras/<name>.jpg.camera`,
one text file per image with 9 lines:
    3 lines K | 1 line radial distortion (`0 0 0`) | 3 lines R | 1 line t | 1 line `width height`
R is camera-to-world (its columns are the camera axes in world coordinates) and t is the
camera centre in metres, so cam_from_world = (R^T, -R^T t).

`load` accepts the scene folder, its `images/` or `gt_dense_cameras/` sub-folder, or a
parent folder holding exactly one scene (a parent with several raises DataError naming them).
Images without a `.camera` file and `.camera` files without an image are skipped (noted).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera, Pose
from ..registry import register
from ..scene import Frame, Scene

GT_DIR, IMG_DIR = "gt_dense_cameras", "images"


def _is_scene(path: Path) -> bool:
    gt = path / GT_DIR
    return gt.is_dir() and (path / IMG_DIR).is_dir() and next(gt.glob("*.camera"), None) is not None


def _candidates(path: Path) -> list[Path]:
    """Scene folders that `path` designates: itself, its parent, or its sub-folders."""
    if not path.is_dir():
        return []
    if _is_scene(path):
        return [path]
    if path.name in (GT_DIR, IMG_DIR) and _is_scene(path.parent):
        return [path.parent]
    return sorted(p for p in path.iterdir() if p.is_dir() and _is_scene(p))


def _scene_root(path: Path) -> Path:
    scenes = _candidates(path)
    if len(scenes) == 1:
        return scenes[0]
    if scenes:
        raise DataError(f"{path} holds {len(scenes)} Strecha scenes "
                        f"({', '.join(p.name for p in scenes)}); pass one of them")
    raise DataError(f"not a Strecha scene (no {GT_DIR}/*.camera and {IMG_DIR}/): {path}")


def detect(path: Path) -> bool:
    return bool(_candidates(Path(path)))


def read_camera_file(path: Path) -> tuple[Camera, Pose]:
    """Parse one `.camera` file into (Camera in COLMAP pixel convention, cam_from_world)."""
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    sizes = [3, 3, 3, 3, 3, 3, 3, 3, 2]
    if len(lines) != 9 or [len(ln) for ln in lines] != sizes:
        raise DataError(f"{path}: expected 9 lines of 3,3,3,3,3,3,3,3,2 values "
                        f"(K, distortion, R, t, size), got {[len(ln) for ln in lines]}")
    try:
        v = [[float(x) for x in ln] for ln in lines]
    except ValueError as e:
        raise DataError(f"{path}: bad number ({e})") from None
    K, dist, R, t = np.array(v[0:3]), np.array(v[3]), np.array(v[4:7]), np.array(v[7])
    w, h = v[8]
    if abs(K[0, 1]) > 1e-6 or np.abs(K[2] - [0, 0, 1]).max() > 1e-9:
        raise DataError(f"{path}: K must be [fx 0 cx; 0 fy cy; 0 0 1], got {K.tolist()}")
    if np.any(dist != 0):
        raise DataError(f"{path}: non-zero distortion {dist.tolist()} is not supported "
                        "(the published images are undistorted)")
    if w != int(w) or h != int(h):
        raise DataError(f"{path}: image size must be integers, got {w} {h}")
    try:
        cam_from_world = Pose(R.T, -R.T @ t)  # file: R camera-to-world, t camera centre
        # Strecha's K uses the pixel-centre-at-integer convention: +0.5 for COLMAP's.
        camera = Camera.pinhole(K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5, int(w), int(h))
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    return camera, cam_from_world


def load(path: Path) -> Scene:
    root = _scene_root(Path(path))
    frames, notes = [], []
    cam_files = sorted((root / GT_DIR).glob("*.camera"))
    for cf in cam_files:
        image = root / IMG_DIR / cf.name[: -len(".camera")]
        if not image.is_file():
            notes.append(f"skipped {cf.name}: no image {image.name}")
            continue
        camera, pose = read_camera_file(cf)
        frames.append(Frame(name=image.relative_to(root).as_posix(), camera=camera,
                            image_path=image, cam_from_world=pose))
    with_gt = {cf.name[: -len(".camera")] for cf in cam_files}
    no_gt = [p.name for p in sorted((root / IMG_DIR).iterdir())
             if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.name not in with_gt]
    if no_gt:
        notes.append(f"ignored {len(no_gt)} image(s) without a .camera file: {', '.join(no_gt[:5])}")
    if not frames:
        raise DataError(f"Strecha scene {root} has no image with a .camera file")
    return Scene(name=root.name, root=root, format="strecha", frames=frames, metric=True, notes=notes)


register("strecha", detect, load)
