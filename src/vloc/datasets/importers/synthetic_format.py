"""Importer for scenes written by `vloc.datasets.synthetic.generate_scene` (the room)
and `generate_city` (the city: JPEG images in sub-folders, depth optional).

A synthetic scene is a folder holding `vloc_synthetic.json` (the manifest):

    {"format": "vloc_synthetic", "version": 1,
     "config": {...SyntheticConfig...},
     "camera": {"model": "PINHOLE", "width": W, "height": H, "params": [fx, fy, cx, cy]},
     "depth_scale": 0.001,
     "frames": [{"name": "mapping/0000.png", "image": "mapping/0000.png",
                 "depth": "depth/mapping/0000.png", "role": "mapping" | "query",
                 "cam_from_world": {"qvec_wxyz": [w, x, y, z], "t": [x, y, z]}}, ...]}

Images are PNG or JPEG. Depth maps (where a frame has "depth") are 16-bit PNGs,
value * depth_scale = metres (0 = no surface), registered to the images.
The official split "official" maps the `mapping` frames and queries the `query` ones."""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import DataError
from ...geometry import Camera, Pose
from ..registry import register
from ..scene import Frame, Scene

MANIFEST = "vloc_synthetic.json"
FORMAT_TAG = "vloc_synthetic"
FORMAT_VERSION = 1
ROLES = ("mapping", "query")


def _root(path: Path) -> Path:
    path = Path(path)
    return path.parent if path.is_file() and path.name == MANIFEST else path


def detect(path: Path) -> bool:
    return (_root(path) / MANIFEST).is_file()


def read_manifest(path) -> dict:
    """The parsed manifest of the synthetic scene at `path` (folder or manifest file)."""
    file = _root(path) / MANIFEST
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise DataError(f"not a synthetic scene (no {MANIFEST}): {_root(path)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {file}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
        raise DataError(f"{file} is not a vloc synthetic manifest")
    if data.get("version") != FORMAT_VERSION:
        raise DataError(f"{file}: unsupported synthetic manifest version {data.get('version')!r} "
                        f"(this vloc reads version {FORMAT_VERSION})")
    return data


def load(path: Path) -> Scene:
    root = _root(path)
    data = read_manifest(root)
    file = root / MANIFEST
    try:
        cam = data["camera"]
        camera = Camera(cam["model"], cam["width"], cam["height"], tuple(cam["params"]))
        depth_scale = float(data.get("depth_scale", 0.001))
        frames, roles = [], {r: [] for r in ROLES}
        for i, fr in enumerate(data["frames"]):
            role = fr["role"]
            if role not in roles:
                raise DataError(f"{file}: frame {i} has unknown role {role!r} (expected {ROLES})")
            pose = fr["cam_from_world"]
            frames.append(Frame(
                name=str(fr["name"]),
                camera=camera,
                image_path=root / fr["image"],
                cam_from_world=Pose.from_qt(pose["qvec_wxyz"], pose["t"]),
                depth_path=root / fr["depth"] if fr.get("depth") else None,
                depth_scale=depth_scale,
                depth_registered=True,
                sensor="synthetic",
            ))
            roles[role].append(frames[-1].name)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{file}: malformed manifest ({type(e).__name__}: {e})") from None
    missing = [f.image_path for f in frames if not f.image_path.is_file()]
    missing += [f.depth_path for f in frames if f.depth_path is not None and not f.depth_path.is_file()]
    if missing:
        raise DataError(f"synthetic scene {root} is incomplete: {len(missing)} file(s) missing, "
                        f"e.g. {missing[0]}")
    name = str(data.get("config", {}).get("name") or root.name)
    has_depth = any(f.depth_path is not None for f in frames)
    notes = [f"synthetic scene rendered by vloc (exact poses, intrinsics{' and depth' if has_depth else ''})"]
    return Scene(name=name, root=root, format="synthetic", frames=frames,
                 official_splits={"official": (roles["mapping"], roles["query"])},
                 metric=True, notes=notes)


register("synthetic", detect, load)
