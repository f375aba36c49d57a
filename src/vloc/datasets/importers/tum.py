"""TUM RGB-D benchmark sequences (Sturm et al. IROS 2012), e.g. rgbd_dataset_freiburg3_*.

Layout: `rgb.txt` and `depth.txt` (`timestamp path` per line), `groundtruth.txt`
(`timestamp tx ty tz qx qy qz qw`: camera-to-world pose of the colour camera, quaternion
w LAST, metres), `rgb/*.png`, `depth/*.png` (16 bit, value / 5000 = metres, registered to
the colour image). Lines starting with `#` are skipped; listed files that are missing are
skipped. `depth.txt` and `groundtruth.txt` are optional.

Each colour frame gets the nearest ground-truth pose within 0.02 s (else cam_from_world=None;
no interpolation) and the nearest present depth image within 0.02 s.

Intrinsics are not in the files: TUM's published calibration for freiburg1/2/3 is chosen
from the folder name (`freiburgN` or `frN`); freiburg3 (no distortion) when the name says
nothing (noted). Images are 640x480.

Official split `alternate-seconds` (only frames with ground truth): a frame is in the
"30 Hz block" if another colour frame lies within 0.1 s of it; the other (~1 Hz) frames are
queries when their integer second is odd, else map; the whole block maps. It is added
only when it yields both map and query frames.

`load` accepts the sequence folder or one of its files/sub-folders (rgb.txt, rgb/, ...).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera, Pose
from ..registry import register
from ..scene import Frame, Scene

MAX_DT = 0.02          # association tolerance (s), as TUM's associate.py
BLOCK_DT = 0.1         # frames with a neighbour this close form the high-rate block
DEPTH_SCALE = 1 / 5000
WIDTH, HEIGHT = 640, 480

# TUM's published colour intrinsics (fx fy cx cy, OpenCV k1 k2 p1 p2 k3), pixel centres at
# integer coordinates; +0.5 on cx, cy below for COLMAP's convention.
INTRINSICS = {
    1: ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    2: ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    3: ((535.4, 539.2, 320.1, 247.6), (0.0, 0.0, 0.0, 0.0, 0.0)),
}


def tum_camera(freiburg: int) -> Camera:
    (fx, fy, cx, cy), (k1, k2, p1, p2, k3) = INTRINSICS[freiburg]
    cx, cy = cx + 0.5, cy + 0.5
    if not any((k1, k2, p1, p2, k3)):
        return Camera.pinhole(fx, fy, cx, cy, WIDTH, HEIGHT)
    # OpenCV's 5-coefficient model = FULL_OPENCV with k4 = k5 = k6 = 0
    return Camera("FULL_OPENCV", WIDTH, HEIGHT, (fx, fy, cx, cy, k1, k2, p1, p2, k3, 0, 0, 0))


def _freiburg(root: Path) -> int | None:
    m = re.search(r"(?:freiburg|fr)([123])(?![0-9])", root.name.lower())
    return int(m.group(1)) if m else None


def _root(path: Path) -> Path | None:
    for p in (path, path.parent):
        if p.is_dir() and (p / "rgb.txt").is_file() and (p / "rgb").is_dir():
            return p
    return None


def detect(path: Path) -> bool:
    return _root(Path(path)) is not None


def _rows(path: Path, n_values: int, what: str) -> list[tuple[int, list[str]]]:
    """Non-comment lines of a TUM text file as (line number, fields), checked for count."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").split()
        if len(fields) != n_values:
            raise DataError(f"{path}:{i}: expected {n_values} values '{what}', got {len(fields)}")
        rows.append((i, fields))
    return rows


def _floats(path: Path, i: int, fields: list[str]) -> list[float]:
    try:
        v = [float(x) for x in fields]
    except ValueError as e:
        raise DataError(f"{path}:{i}: bad number ({e})") from None
    if not all(np.isfinite(v)):
        raise DataError(f"{path}:{i}: non-finite value")
    return v


def _image_list(root: Path, name: str) -> tuple[np.ndarray, list[str]]:
    """(timestamps, relative paths) of the listed files that exist, sorted by time."""
    path = root / name
    if not path.is_file():
        return np.zeros(0), []
    items = []
    for i, (t, rel) in _rows(path, 2, "timestamp path"):
        if (root / rel).is_file():
            items.append((_floats(path, i, [t])[0], Path(rel).as_posix()))
    items.sort()
    return np.array([t for t, _ in items]), [r for _, r in items]


def _nearest(times: np.ndarray, t: float) -> int | None:
    """Index of the entry of sorted `times` nearest to t if within MAX_DT."""
    if len(times) == 0:
        return None
    j = int(np.searchsorted(times, t))
    best = min((k for k in (j - 1, j) if 0 <= k < len(times)), key=lambda k: abs(times[k] - t))
    return best if abs(times[best] - t) <= MAX_DT else None


def _ground_truth(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, N x 7 [tx ty tz qx qy qz qw]) sorted by time; empty if no file."""
    path = root / "groundtruth.txt"
    if not path.is_file():
        return np.zeros(0), np.zeros((0, 7))
    v = np.array([_floats(path, i, f) for i, f in _rows(path, 8, "timestamp tx ty tz qx qy qz qw")])
    if len(v) == 0:
        return np.zeros(0), np.zeros((0, 7))
    v = v[np.argsort(v[:, 0], kind="stable")]
    bad = np.linalg.norm(v[:, 4:8], axis=1) < 1e-6
    if bad.any():
        raise DataError(f"{path}: zero quaternion at timestamp {v[bad][0, 0]:.6f}")
    return v[:, 0], v[:, 1:]


def alternate_seconds(frames: list[Frame]) -> tuple[list[str], list[str]]:
    """(map, query) names of the `alternate-seconds` split (see module doc)."""
    all_t = np.sort([f.timestamp for f in frames])
    mapping, query = [], []
    for f in frames:
        if not f.has_pose:
            continue
        gaps = np.abs(all_t - f.timestamp)
        in_block = np.sum(gaps <= BLOCK_DT) > 1  # itself plus a neighbour
        if not in_block and int(np.floor(f.timestamp)) % 2 == 1:
            query.append(f.name)
        else:
            mapping.append(f.name)
    return mapping, query


def load(path: Path) -> Scene:
    path = Path(path)
    root = _root(path)
    if root is None:
        raise DataError(f"not a TUM RGB-D sequence (no rgb.txt and rgb/): {path}")
    notes = []
    fr = _freiburg(root)
    if fr is None:
        fr = 3
        notes.append(f"folder name {root.name!r} names no freiburg1/2/3 camera: "
                     "assumed freiburg3 intrinsics")
    camera = tum_camera(fr)
    rgb_t, rgb = _image_list(root, "rgb.txt")
    depth_t, depth = _image_list(root, "depth.txt")
    gt_t, gt = _ground_truth(root)
    if not rgb:
        raise DataError(f"{root / 'rgb.txt'}: none of the listed images exists")
    frames = []
    for t, rel in zip(rgb_t, rgb):
        pose = None
        if (k := _nearest(gt_t, t)) is not None:
            tx, ty, tz, qx, qy, qz, qw = gt[k]
            pose = Pose.from_qt((qw, qx, qy, qz), (tx, ty, tz)).inverse()  # file: camera-to-world
        d = _nearest(depth_t, t)
        frames.append(Frame(name=rel, camera=camera, image_path=root / rel, cam_from_world=pose,
                            depth_path=None if d is None else root / depth[d],
                            depth_scale=DEPTH_SCALE, depth_registered=True,
                            timestamp=float(t), sensor="rgb"))
    n_no_gt = sum(not f.has_pose for f in frames)
    if n_no_gt:
        notes.append(f"{n_no_gt} of {len(frames)} frames have no ground truth within {MAX_DT} s")
    splits = {}
    mapping, query = alternate_seconds(frames)
    if mapping and query:
        splits["alternate-seconds"] = (mapping, query)
    return Scene(name=root.name, root=root, format="tum", frames=frames,
                 official_splits=splits, metric=True, notes=notes)


register("tum", detect, load)
