"""Middlebury multi-view stereo sets (Seitz et al. CVPR 2006): temple*, dino*.

Layout: one folder with the images and `<set>_par.txt`: a first line with the number of
views, then one line per view
    name k11 k12 k13 k21 k22 k23 k31 k32 k33 r11 r12 r13 r21 r22 r23 r31 r32 r33 t1 t2 t3
with projection x ~ K (R X + t): R, t are world-to-camera (= vloc's cam_from_world), metres.
Every line has its own K. Lines whose image is missing are skipped (count in scene.notes).
Image sizes are read from the image headers.

`load` accepts the set's folder, its `_par.txt` file, or a parent holding exactly one set.
A parent with several sets raises DataError: different sets are NOT in one world frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera, Pose
from ...imageio import image_size
from ..registry import register
from ..scene import Frame, Scene

_N_VALUES = 1 + 9 + 9 + 3


def _par_file(folder: Path) -> Path | None:
    """The folder's `*_par.txt` if its first line is a view count (cheap check)."""
    for p in sorted(folder.glob("*_par.txt")):
        try:
            with open(p) as f:
                if f.readline().strip().isdigit():
                    return p
        except (OSError, UnicodeDecodeError):
            pass
    return None


def _candidates(path: Path) -> list[Path]:
    """`_par.txt` files that `path` designates (itself, in it, or in its sub-folders)."""
    if path.is_file():
        return [path] if path.name.endswith("_par.txt") else []
    if not path.is_dir():
        return []
    if (p := _par_file(path)) is not None:
        return [p]
    return [p for d in sorted(path.iterdir()) if d.is_dir() and (p := _par_file(d)) is not None]


def detect(path: Path) -> bool:
    return bool(_candidates(Path(path)))


def _parse_line(line: str, where: str) -> tuple[str, np.ndarray, Pose]:
    parts = line.split()
    if len(parts) != _N_VALUES:
        raise DataError(f"{where}: expected {_N_VALUES} values 'name k11..k33 r11..r33 t1 t2 t3', "
                        f"got {len(parts)}")
    try:
        v = np.array([float(x) for x in parts[1:]])
    except ValueError as e:
        raise DataError(f"{where}: bad number ({e})") from None
    K, R, t = v[:9].reshape(3, 3), v[9:18].reshape(3, 3), v[18:]
    if abs(K[0, 1]) > 1e-6 or np.abs(K[2] - [0, 0, 1]).max() > 1e-9:
        raise DataError(f"{where}: K must be [fx 0 cx; 0 fy cy; 0 0 1], got {K.tolist()}")
    try:
        pose = Pose(R, t)  # world-to-camera already
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    return parts[0], K, pose


def load(path: Path) -> Scene:
    path = Path(path)
    cands = _candidates(path)
    if len(cands) > 1:
        raise DataError(f"{path} holds {len(cands)} Middlebury sets "
                        f"({', '.join(p.parent.name for p in cands)}) in different world frames; "
                        "pass one of them")
    if not cands:
        raise DataError(f"not a Middlebury set (no *_par.txt with a view count): {path}")
    par = cands[0]
    root = par.parent
    try:
        text = par.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {par}: {e}") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if not lines or not lines[0][1].strip().isdigit():
        raise DataError(f"{par}: first line must be the number of views")
    n = int(lines[0][1])
    if n != len(lines) - 1:
        raise DataError(f"{par}: declares {n} views but has {len(lines) - 1} lines")
    frames, missing = [], 0
    for i, line in lines[1:]:
        name, K, pose = _parse_line(line, f"{par}:{i}")
        image = root / name
        if not image.is_file():
            missing += 1
            continue
        w, h = image_size(image)
        # Middlebury's K has pixel centres at integer coordinates: +0.5 for COLMAP's convention.
        camera = Camera.pinhole(K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5, w, h)
        frames.append(Frame(name=image.relative_to(root).as_posix(), camera=camera,
                            image_path=image, cam_from_world=pose))
    notes = [f"skipped {missing} of {n} views listed in {par.name}: image missing"] if missing else []
    if not frames:
        raise DataError(f"{par}: none of the {n} listed images exists in {root}")
    return Scene(name=root.name, root=root, format="middlebury", frames=frames, metric=True, notes=notes)


register("middlebury", detect, load)
