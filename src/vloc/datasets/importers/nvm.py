"""VisualSFM NVM_V3 models, e.g. `aachen_day_night_sample/3D-models/aachen_cvpr2018_db.nvm`.

Accepted paths: a `.nvm` file, or a folder with `.nvm` files under `3D-models/`
(searched recursively). With several (the Aachen sample has `aachen_cvpr2018_db.nvm`
and `aachen_two_parts.nvm`), the one with a sibling `<stem>.list.txt` or `<stem>.out`
is taken (Aachen ships its database model that way); otherwise pass the file itself.

Detection order matters for the Aachen sample: `aachen_day_night_sample/kapture` is a
kapture folder (the kapture importer, registered first, takes it, queries included);
`aachen_day_night_sample` itself is not a kapture folder and is detected here as NVM
(database images only).

Per camera line: `name f qw qx qy qz cx cy cz r 0` — the quaternion (w first) is the
**world-to-camera** rotation R and (cx, cy, cz) the **camera centre** C, so
`cam_from_world = (R, -R C)`. Only the first model of a multi-model file is read (the
others have their own world frames; noted). 3D points are not read.

Images: names are looked up relative to the nvm's folder, its parent, and
`images_upright/` or `images/` in either (for the Aachen sample:
`aachen_day_night_sample/images_upright/`). Frames whose image is missing are skipped
(noted). The image size comes from the image file.

Camera: SIMPLE_RADIAL (f, w/2, h/2, k) with **k = -r**. NVM's r maps *measured*
(distorted) normalised points to undistorted ones, x_u = x_d (1 + r |x_d|^2), while
COLMAP's k maps undistorted to distorted, x_d = x_u (1 + k |x_u|^2); k = -r is the
first-order inverse, so the model is approximate for large r |x|^2 (the kapture
conversion of Aachen uses the same k = -r). NVM says nothing about the principal
point; the image centre is assumed (COLMAP's corner convention). Units: arbitrary
SfM units (`metric=False`).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ...geometry import Camera, Pose
from ...imageio import image_size
from ..registry import register
from ..scene import Frame, Scene


def _nvm_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix.lower() == ".nvm" else []
    models = path / "3D-models"
    if not models.is_dir():
        return []
    return sorted(p for p in models.rglob("*") if p.suffix.lower() == ".nvm" and p.is_file())


def _pick(path: Path) -> Path:
    files = _nvm_files(path)
    if len(files) == 1:
        return files[0]
    preferred = [f for f in files if f.with_suffix(".list.txt").is_file() or f.with_suffix(".out").is_file()]
    if len(preferred) == 1:
        return preferred[0]
    if not files:
        raise DataError(f"nvm: no .nvm file at {path} (a .nvm file or a folder with 3D-models/*.nvm)")
    raise DataError(f"nvm: several .nvm models under {path} ({', '.join(f.name for f in files)}); "
                    f"pass the file to load")


def detect(path: Path) -> bool:
    path = Path(path)
    files = _nvm_files(path)
    if not files:
        return False
    try:
        with open(files[0], "rb") as f:
            return f.read(6) == b"NVM_V3"
    except OSError:
        return False


def _image_root(nvm: Path, names: list[str]) -> Path | None:
    bases = [nvm.parent, nvm.parent.parent]
    cands = [d for b in bases for d in (b, b / "images_upright", b / "images")]
    for d in cands:
        if any((d / n).is_file() for n in names):
            return d
    return None


def load(path: Path) -> Scene:
    path = Path(path)
    nvm = _pick(path)
    try:
        lines = nvm.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise DataError(f"{nvm}: cannot read: {e}") from None
    if not lines or not lines[0].startswith("NVM_V3"):
        raise DataError(f"{nvm}: not an NVM_V3 file (first line {lines[0][:40]!r})" if lines else f"{nvm}: empty file")
    body = [(i, ln.split()) for i, ln in enumerate(lines[1:], 2) if ln.strip()]
    if not body:
        raise DataError(f"{nvm}: no camera count")
    try:
        n_cams = int(body[0][1][0])
    except ValueError:
        raise DataError(f"{nvm}:{body[0][0]}: expected the number of cameras, got {body[0][1][0]!r}") from None
    if len(body) < 1 + n_cams:
        raise DataError(f"{nvm}: {n_cams} cameras announced, {len(body) - 1} lines follow")
    cams = []
    for lineno, tok in body[1:1 + n_cams]:
        if len(tok) < 10:
            raise DataError(f"{nvm}:{lineno}: expected 'name f qw qx qy qz cx cy cz r 0', got {len(tok)} fields")
        try:
            f, q, c, r = float(tok[1]), [float(v) for v in tok[2:6]], [float(v) for v in tok[6:9]], float(tok[9])
            R = Pose.from_qt(q, [0, 0, 0]).R
        except (ValueError, DataError) as e:
            raise DataError(f"{nvm}:{lineno}: bad camera line: {e}") from None
        cams.append((tok[0], f, Pose(R, -R @ c), r))

    notes: list[str] = []
    # multi-model files: after the points block of model 0 comes another camera count
    rest = body[1 + n_cams:]
    if rest:
        try:
            n_pts = int(rest[0][1][0])
            more = rest[1 + n_pts:]
            if more and int(more[0][1][0]) > 0:
                notes.append(f"{nvm.name}: more than one model in the file; only the first was read")
        except (ValueError, IndexError):
            pass

    root = _image_root(nvm, [c[0] for c in cams])
    frames, missing = [], 0
    for name, f, pose, r in cams:
        image = root / name if root is not None else None
        if image is None or not image.is_file():
            missing += 1
            continue
        w, h = image_size(image)
        try:
            camera = Camera("SIMPLE_RADIAL", w, h, (f, w / 2, h / 2, -r))
        except DataError as e:
            raise DataError(f"{nvm}: camera {name}: {e}") from None
        frames.append(Frame(name=name, camera=camera, image_path=image, cam_from_world=pose))
    if missing:
        notes.append(f"{missing} of {len(cams)} cameras skipped (image not found"
                     f"{' under ' + str(root) if root else ''})")
    scene_root = path if path.is_dir() else nvm.parent
    return Scene(name=scene_root.name if path.is_dir() else nvm.stem, root=scene_root, format="nvm",
                 frames=frames, metric=False, notes=notes)


register("nvm", detect, load)
