"""Microsoft 7-Scenes (Shotton et al. CVPR 2013): chess, fire, heads, office, pumpkin,
redkitchen, stairs.

Layout of a scene folder: `seq-XX/frame-XXXXXX.color.png` (or `.color.jpg`),
`frame-XXXXXX.depth.png` (16 bit, millimetres, 0 and 65535 invalid) and
`frame-XXXXXX.pose.txt` (4x4 camera-to-world, metres, from KinectFusion; its rotation is
only roughly orthonormal and is re-orthonormalised), plus `TrainSplit.txt` /
`TestSplit.txt` (`sequenceN` lines) -> official split "official" (frames with a pose).

Intrinsics are not in the files. We use the values commonly taken for the RGB camera,
f = 525, c = (320, 240) for 640x480 (+0.5 on c for COLMAP's pixel convention). The depth
camera (f = 585) is NOT registered to the colour camera: depth_registered=False. The poses
come from KinectFusion, which tracked the depth camera; as is customary they are used for
the colour camera too (the few-cm colour-depth offset is ignored).
Non-finite poses give frames without pose (noted).

`load` accepts the scene folder (e.g. .../7scenes/stairs), one of its `seq-XX` folders
(the whole scene is loaded), or a dataset root with exactly one scene up to two levels
below it (e.g. the folder holding `microsoft/stairs`).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera, Pose
from ..registry import register
from ..scene import Frame, Scene

CAMERA = Camera.pinhole(525.0, 525.0, 320.0 + 0.5, 240.0 + 0.5, 640, 480)  # +0.5: COLMAP convention
DEPTH_SCALE = 0.001
_SEQ = re.compile(r"seq-(\d+)$")


def _is_scene(path: Path) -> bool:
    for seq in path.glob("seq-*"):
        if seq.is_dir() and _SEQ.match(seq.name) and next(seq.glob("frame-*.pose.txt"), None):
            return True
    return False


def _candidates(path: Path, depth: int = 2) -> list[Path]:
    """Scene folders at `path` or up to `depth` levels below it."""
    if not path.is_dir():
        return []
    if _is_scene(path):
        return [path]
    if _SEQ.match(path.name) and _is_scene(path.parent):
        return [path.parent]
    if depth == 0:
        return []
    out = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and not _SEQ.match(child.name):
            out += _candidates(child, depth - 1)
    return out


def detect(path: Path) -> bool:
    return bool(_candidates(Path(path)))


def read_pose(path: Path) -> Pose | None:
    """cam_from_world from a 4x4 camera-to-world pose.txt; None if the pose is non-finite."""
    try:
        M = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read a 4x4 matrix ({e})") from None
    if M.shape != (4, 4):
        raise DataError(f"{path}: expected a 4x4 matrix, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        return None
    try:
        return Pose.from_matrix(M, orthonormalize=True).inverse()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def _split_file(root: Path, name: str) -> list[str] | None:
    """Sequence folder names (seq-XX) listed in a split file, or None if absent."""
    path = root / name
    if not path.is_file():
        return None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    seqs = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = re.fullmatch(r"\s*sequence(\d+)\s*", line)
        if m is None:
            raise DataError(f"{path}:{i}: expected 'sequenceN', got {line.strip()!r}")
        seqs.append(f"seq-{int(m.group(1)):02d}")
    return seqs


def load(path: Path) -> Scene:
    path = Path(path)
    scenes = _candidates(path)
    if len(scenes) > 1:
        raise DataError(f"{path} holds {len(scenes)} 7-Scenes scenes "
                        f"({', '.join(p.name for p in scenes)}); pass one of them")
    if not scenes:
        raise DataError(f"not a 7-Scenes scene (no seq-XX/frame-*.pose.txt): {path}")
    root = scenes[0]
    frames, notes, n_no_pose = [], [], 0
    for seq in sorted(p for p in root.iterdir() if p.is_dir() and _SEQ.match(p.name)):
        for pose_file in sorted(seq.glob("frame-*.pose.txt")):
            stem = pose_file.name[: -len(".pose.txt")]
            image = next((seq / f"{stem}.color.{ext}" for ext in ("png", "jpg")
                          if (seq / f"{stem}.color.{ext}").is_file()), None)
            if image is None:
                notes.append(f"skipped {seq.name}/{pose_file.name}: no colour image")
                continue
            pose = read_pose(pose_file)
            n_no_pose += pose is None
            depth = seq / f"{stem}.depth.png"
            frames.append(Frame(name=image.relative_to(root).as_posix(), camera=CAMERA,
                                image_path=image, cam_from_world=pose,
                                depth_path=depth if depth.is_file() else None,
                                depth_scale=DEPTH_SCALE, depth_registered=False))
    if n_no_pose:
        notes.append(f"{n_no_pose} frames have a non-finite pose (kept without pose)")
    splits = {}
    train, test = _split_file(root, "TrainSplit.txt"), _split_file(root, "TestSplit.txt")
    if train is not None and test is not None:
        def names(seqs):
            return [f.name for f in frames if f.has_pose and f.name.split("/")[0] in seqs]
        splits["official"] = (names(train), names(test))
    return Scene(name=root.name, root=root, format="7scenes", frames=frames,
                 official_splits=splits, metric=True, notes=notes)


register("7scenes", detect, load)
