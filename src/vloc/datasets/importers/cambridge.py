"""Cambridge Landmarks (Kendall et al., PoseNet, ICCV 2015): KingsCollege, OldHospital,
ShopFacade, StMarysChurch, GreatCourt, Street.

Layout of a scene folder: `dataset_train.txt`, `dataset_test.txt`, `seqN/frameXXXXX.png`
(and `reconstruction.nvm`, unused here). Each pose file has 3 header lines
    Visual Landmark Dataset V1 | ImageFile, Camera Position [X Y Z W P Q R] | (blank)
then `seq1/frame00001.png X Y Z W P Q R`, where X Y Z is the camera CENTRE in world
coordinates and W P Q R the quaternion (w, x, y, z) of the WORLD-TO-CAMERA rotation, as
in the VisualSFM (NVM) model the poses come from: cam_from_world = (R(q), -R(q) c).
Official split "official": train -> map, test -> query. Lines whose image is missing
are skipped (noted).

Intrinsics are not in these files (VisualSFM estimated a focal length per image, in the
NVM). We use one approximate PINHOLE camera per scene: f = 1.5508 * image height (the
value DSAC uses: 744.375 px at 480 px height, i.e. ~893 px at the published 1024x576 and
~1675 px at 1920x1080), principal point at the image centre (W/2, H/2) and no distortion.
The image size is read from the first image. Use the NVM model for exact intrinsics.

`load` accepts the scene folder or one of its two pose files.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ...geometry import Camera, Pose
from ...imageio import image_size
from ..registry import register
from ..scene import Frame, Scene

FILES = {"train": "dataset_train.txt", "test": "dataset_test.txt"}
FOCAL_PER_HEIGHT = 744.375 / 480.0
_HEADER = "ImageFile, Camera Position"


def _root(path: Path) -> Path | None:
    if path.is_file() and path.name in FILES.values():
        path = path.parent
    if not path.is_dir():
        return None
    for name in FILES.values():
        try:
            with open(path / name) as f:
                if _HEADER in (f.readline() + f.readline()):
                    return path
        except (OSError, UnicodeDecodeError):
            pass
    return None


def detect(path: Path) -> bool:
    return _root(Path(path)) is not None


def parse_pose_file(path: Path) -> list[tuple[str, Pose]]:
    """(image path, cam_from_world) for every line after the 3 header lines."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(lines) < 2 or _HEADER not in lines[1]:
        raise DataError(f"{path}: line 2 must be the header '{_HEADER} [X Y Z W P Q R]'")
    out = []
    for i, line in enumerate(lines[3:], start=4):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 8:
            raise DataError(f"{path}:{i}: expected 8 values 'image X Y Z W P Q R', got {len(parts)}")
        try:
            x, y, z, qw, qx, qy, qz = (float(v) for v in parts[1:])
            R = Pose.from_qt((qw, qx, qy, qz), (0, 0, 0)).R  # world-to-camera rotation
            out.append((Path(parts[0]).as_posix(), Pose(R, -R @ [x, y, z])))  # t = -R c
        except ValueError as e:
            raise DataError(f"{path}:{i}: bad number ({e})") from None
        except DataError as e:
            raise DataError(f"{path}:{i}: {e}") from None
    return out


def load(path: Path) -> Scene:
    path = Path(path)
    root = _root(path)
    if root is None:
        raise DataError(f"not a Cambridge Landmarks scene (no {' / '.join(FILES.values())}): {path}")
    entries = {split: parse_pose_file(root / f) if (root / f).is_file() else []
               for split, f in FILES.items()}
    present = {s: [(n, p) for n, p in e if (root / n).is_file()] for s, e in entries.items()}
    first = next((root / n for e in present.values() for n, _ in e), None)
    if first is None:
        raise DataError(f"{root}: none of the images listed in the pose files exists")
    w, h = image_size(first)
    f = FOCAL_PER_HEIGHT * h
    camera = Camera.pinhole(f, f, w / 2, h / 2, w, h)  # approximate, see module doc
    notes = [f"approximate intrinsics (f = {f:.1f} px from image height, centre principal point)"]
    frames, splits = [], {}
    for split, items in present.items():
        n_missing = len(entries[split]) - len(items)
        if n_missing:
            notes.append(f"skipped {n_missing} of {len(entries[split])} {FILES[split]} lines: image missing")
        for name, pose in items:
            frames.append(Frame(name=name, camera=camera, image_path=root / name,
                                cam_from_world=pose))
    train, test = [n for n, _ in present["train"]], [n for n, _ in present["test"]]
    if train and test:
        splits["official"] = (train, test)
    return Scene(name=root.name, root=root, format="cambridge", frames=frames,
                 official_splits=splits, metric=True, notes=notes)


register("cambridge", detect, load)
