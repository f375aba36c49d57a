"""NeRF / instant-ngp `transforms.json`, e.g. `nerf_fox/`.

Accepted paths: a `transforms*.json` file, or a folder holding `transforms.json`, or a
folder holding `transforms_train.json` / `transforms_test.json` (NeRF-synthetic
layout; official split `"official"` = (train, test); `transforms_val.json` frames are
loaded too but belong to neither side).

Intrinsics (top level, overridden per frame where a frame has its own keys):
`fl_x`, `fl_y`, `cx`, `cy`, `w`, `h` and OpenCV distortion `k1 k2 p1 p2` (`k3`, `k4`
-> FULL_OPENCV; `is_fisheye` -> OPENCV_FISHEYE with k1..k4). Without `fl_x` the focal
comes from `camera_angle_x`: f = 0.5 w / tan(angle_x / 2) (`fl_y` likewise from
`camera_angle_y`, else fl_y = fl_x). Missing `cx, cy` default to (w/2, h/2) and a
missing `w, h` is read from the image. Model: PINHOLE when all distortion terms are 0,
else OPENCV. `cx, cy` are used as they are: instant-ngp's `colmap2nerf.py` copies them
from COLMAP's cameras.txt and instant-ngp divides them by (w, h) to get the principal
point in [0, 1] image coordinates, i.e. COLMAP's corner convention, which is vloc's.

Poses: `transform_matrix` is camera-to-world in OpenGL camera axes (x right, y up,
z backward). `cam_from_world = inverse(M @ diag(1, -1, -1, 1))`. colmap2nerf also
re-orients, re-centres and re-scales the world; that is a similarity of the world
frame and harmless, but units are arbitrary (`metric=False`). A rotation block that is
a rotation up to float noise (1e-3) is re-orthonormalised; anything else is an error.

`file_path` is relative to the json's folder and may lack its extension (NeRF
synthetic: `./train/r_0`); `.png`, `.jpg`, `.jpeg` are tried. Frames whose image is
missing are skipped and counted in `scene.notes` (nerf_fox lists 67 frames, 50
images exist). Frame names are the image paths relative to the json's folder.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera, Pose
from ...geometry.pose import nearest_rotation
from ...imageio import image_size
from ..registry import register
from ..scene import Frame, Scene

_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_SPLIT_FILES = ("transforms_train.json", "transforms_val.json", "transforms_test.json")


def _json_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix == ".json" and path.name.startswith("transforms") else []
    if not path.is_dir():
        return []
    if (path / "transforms.json").is_file():
        return [path / "transforms.json"]
    return [path / n for n in _SPLIT_FILES if (path / n).is_file()]


def detect(path: Path) -> bool:
    files = _json_files(Path(path))
    if not files:
        return False
    try:
        with open(files[0], encoding="utf-8", errors="replace") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    return '"frames"' in head and '"transform_matrix"' in head


# ---------------------------------------------------------------- helpers
def _number(d: dict, key: str, file: Path, where: str):
    v = d.get(key)
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise DataError(f"{file}: {where}'{key}' must be a number, got {v!r}") from None
    if not math.isfinite(v):
        raise DataError(f"{file}: {where}'{key}' is not finite")
    return v


def _resolve_image(base: Path, file_path: str) -> Path | None:
    p = base / file_path
    if p.is_file():
        return p
    if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        for ext in _EXTS:
            q = p.with_name(p.name + ext)
            if q.is_file():
                return q
    return None


def _camera(top: dict, fr: dict, file: Path, where: str, image: Path) -> Camera:
    def get(key):
        v = _number(fr, key, file, where)
        return _number(top, key, file, "") if v is None else v

    w, h = get("w"), get("h")
    if w is None or h is None:
        w, h = image_size(image)
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None and fy is None:
        ax = get("camera_angle_x")
        if ax is None:
            raise DataError(f"{file}: {where}no focal length (need 'fl_x' or 'camera_angle_x')")
        if not 0 < ax < math.pi:
            raise DataError(f"{file}: 'camera_angle_x' must be in (0, pi), got {ax}")
        fx = 0.5 * w / math.tan(0.5 * ax)
    elif fx is None:
        fx = fy
    if fy is None:
        ay = get("camera_angle_y")
        if get("fl_x") is None and ay is not None and 0 < ay < math.pi:
            fy = 0.5 * h / math.tan(0.5 * ay)
        else:
            fy = fx
    cx = get("cx")
    cy = get("cy")
    cx = 0.5 * w if cx is None else cx
    cy = 0.5 * h if cy is None else cy
    dist = {k: (get(k) or 0.0) for k in ("k1", "k2", "k3", "k4", "p1", "p2")}
    fisheye = bool(fr.get("is_fisheye", top.get("is_fisheye", False)))
    try:
        if fisheye:
            return Camera("OPENCV_FISHEYE", round(w), round(h),
                          (fx, fy, cx, cy, dist["k1"], dist["k2"], dist["k3"], dist["k4"]))
        if dist["k3"] or dist["k4"]:
            return Camera("FULL_OPENCV", round(w), round(h),
                          (fx, fy, cx, cy, dist["k1"], dist["k2"], dist["p1"], dist["p2"],
                           dist["k3"], dist["k4"], 0.0, 0.0))
        if any(dist[k] for k in ("k1", "k2", "p1", "p2")):
            return Camera("OPENCV", round(w), round(h),
                          (fx, fy, cx, cy, dist["k1"], dist["k2"], dist["p1"], dist["p2"]))
        return Camera("PINHOLE", round(w), round(h), (fx, fy, cx, cy))
    except DataError as e:
        raise DataError(f"{file}: {where}{e}") from None


def _pose(fr: dict, file: Path, where: str) -> Pose:
    if "transform_matrix" not in fr:
        raise DataError(f"{file}: {where}missing 'transform_matrix'")
    try:
        M = np.array(fr["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{file}: {where}'transform_matrix' is not a numeric matrix") from None
    if M.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(M)):
        raise DataError(f"{file}: {where}'transform_matrix' must be a finite 4x4 (or 3x4) matrix, "
                        f"got shape {M.shape}")
    if M.shape == (3, 4):
        M = np.vstack([M, [0, 0, 0, 1]])
    if np.abs(M[3] - [0, 0, 0, 1]).max() > 1e-6:
        raise DataError(f"{file}: {where}'transform_matrix' last row must be [0, 0, 0, 1], got {M[3].tolist()}")
    R = M[:3, :3]
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or abs(np.linalg.det(R) - 1) > 1e-3:
        raise DataError(f"{file}: {where}'transform_matrix' rotation block is not a rotation "
                        f"(det={np.linalg.det(R):.4f}); scaled or sheared poses are not supported")
    M[:3, :3] = nearest_rotation(R)
    world_from_cam = Pose.from_matrix(M @ _GL_TO_CV)
    return world_from_cam.inverse()


def _load_file(file: Path, root: Path, notes: list[str]) -> list[Frame]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{file}: cannot read json: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise DataError(f"{file}: missing 'frames' list")
    base = file.parent
    frames, missing = [], 0
    for i, fr in enumerate(data["frames"]):
        if not isinstance(fr, dict):
            raise DataError(f"{file}: frames[{i}] is not an object")
        where = f"frames[{i}]: "
        if not isinstance(fr.get("file_path"), str):
            raise DataError(f"{file}: {where}missing 'file_path'")
        pose = _pose(fr, file, where)
        image = _resolve_image(base, fr["file_path"])
        if image is None:
            missing += 1
            continue
        camera = _camera(data, fr, file, where, image)
        name = Path(*[p for p in Path(image.relative_to(root)).parts if p != "."]).as_posix()
        frames.append(Frame(name=name, camera=camera, image_path=image, cam_from_world=pose))
    if missing:
        notes.append(f"{file.name}: {missing} of {len(data['frames'])} frames skipped (image file missing)")
    return frames


def load(path: Path) -> Scene:
    path = Path(path)
    files = _json_files(path)
    if not files:
        raise DataError(f"nerf: no transforms.json (or transforms_train/test.json) at {path}")
    root = files[0].parent
    notes: list[str] = []
    per_file = {f.name: _load_file(f, root, notes) for f in files}
    frames = [fr for fs in per_file.values() for fr in fs]
    splits = {}
    if "transforms_train.json" in per_file and "transforms_test.json" in per_file:
        splits["official"] = ([f.name for f in per_file["transforms_train.json"]],
                              [f.name for f in per_file["transforms_test.json"]])
    return Scene(name=root.name, root=root, format="nerf", frames=frames,
                 official_splits=splits, metric=False, notes=notes)


register("nerf", detect, load)
