"""COLMAP sparse models (text `cameras.txt / images.txt / points3D.txt` or binary
`.bin`), read through `pycolmap.Reconstruction`, e.g. `maupertuis_colmap_sample/`.

Accepted paths:

- the model folder itself (holds `cameras.{txt,bin}` and `images.{txt,bin}`);
- a dataset folder with the model in `reconstruction/`, `sparse/0/`, `sparse/` or
  `model/` (first found, in that order) and the images in `images/`.

The images folder is `images/` next to the model folder or up to two levels above it
(`<dataset>/sparse/0` -> `<dataset>/images`); `image_path = images / image.name`.
Frames whose image file is missing are skipped (noted); when no images folder exists
at all, frames keep `image_path=None` (noted).

Poses are `image.cam_from_world()` (COLMAP: world-to-camera, OpenCV axes), cameras keep
their COLMAP model and parameters (COLMAP's pixel convention is vloc's). Images without
a pose in the model get `cam_from_world=None`. No official split; SfM units are
arbitrary (`metric=False`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ...geometry import Camera, Pose
from ..registry import register
from ..scene import Frame, Scene

_MODEL_SUBDIRS = ("reconstruction", "sparse/0", "sparse", "model")


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and all(
        (path / f"{n}.txt").is_file() or (path / f"{n}.bin").is_file() for n in ("cameras", "images"))


def _model_dir(path: Path) -> Path | None:
    if _is_model_dir(path):
        return path
    for sub in _MODEL_SUBDIRS:
        if _is_model_dir(path / sub):
            return path / sub
    return None


def detect(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and _model_dir(path) is not None


def _images_dir(dataset: Path, model: Path) -> Path | None:
    for d in (dataset, model, *list(model.parents)[:2]):
        if (d / "images").is_dir():
            return d / "images"
    return None


def _check_text_cameras(model: Path) -> None:
    """Name the file and line of an unknown camera model (pycolmap's message does not)."""
    from ...geometry.camera import CAMERA_MODELS
    file = model / "cameras.txt"
    if not file.is_file():
        return
    for i, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 4:
            raise DataError(f"{file}:{i}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...', got {line.strip()!r}")
        if parts[1].upper() not in CAMERA_MODELS:
            raise DataError(f"{file}:{i}: unknown camera model {parts[1]!r}; known: {', '.join(CAMERA_MODELS)}")


def _read(model: Path):
    from ..._libs import pycolmap
    _check_text_cameras(model)
    try:
        return pycolmap.Reconstruction(str(model))
    except Exception as e:  # pycolmap raises ValueError / RuntimeError with multi-line text
        msg = " ".join(str(e).split())[:300]
        raise DataError(f"{model}: cannot read COLMAP model: {msg}") from None


def _model_file(model: Path, name: str) -> Path:
    txt = model / f"{name}.txt"
    return txt if txt.is_file() else model / f"{name}.bin"


def load(path: Path) -> Scene:
    path = Path(path)
    model = _model_dir(path) if path.is_dir() else None
    if model is None:
        raise DataError(f"colmap: no COLMAP model (cameras + images .txt/.bin) at {path} "
                        f"or in its {', '.join(_MODEL_SUBDIRS)} sub-folders")
    rec = _read(model)
    notes: list[str] = []
    cameras = {}
    for cid, cam in rec.cameras.items():
        try:
            cameras[cid] = Camera.from_pycolmap(cam)
        except DataError as e:
            raise DataError(f"{_model_file(model, 'cameras')}: camera {cid}: {e}") from None

    images = _images_dir(path, model)
    if images is None:
        notes.append(f"no images/ folder found near {model}; frames have no image_path")
    frames, missing = [], 0
    for im in sorted(rec.images.values(), key=lambda im: im.name):
        image_path = None
        if images is not None:
            image_path = images / im.name
            if not image_path.is_file():
                missing += 1
                continue
        pose = None
        if im.has_pose:
            pose = Pose.from_pycolmap(im.cam_from_world())
        frames.append(Frame(name=im.name, camera=cameras[im.camera_id], image_path=image_path,
                            cam_from_world=pose, sensor=str(im.camera_id)))
    if missing:
        notes.append(f"{missing} of {len(rec.images)} images skipped (file missing under {images})")
    name_dir = path
    while name_dir.name in ("0", "sparse", "reconstruction", "model") and name_dir.parent != name_dir:
        name_dir = name_dir.parent
    return Scene(name=name_dir.name, root=path, format="colmap", frames=frames, metric=False, notes=notes)


def load_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The model's 3D points: (xyz (N, 3) float64, track lengths (N,) int), ordered by point id."""
    path = Path(path)
    model = _model_dir(path) if path.is_dir() else None
    if model is None:
        raise DataError(f"colmap: no COLMAP model at {path}")
    rec = _read(model)
    ids = sorted(rec.points3D)
    xyz = np.array([rec.points3D[i].xyz for i in ids], dtype=np.float64).reshape(-1, 3)
    lengths = np.array([rec.points3D[i].track.length() for i in ids], dtype=np.int64)
    return xyz, lengths


register("colmap", detect, load)
