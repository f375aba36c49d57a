"""kapture 1.x text format (NAVER LABS), e.g. `virtual_gallery_tutorial/` and
`aachen_day_night_sample/kapture/`.

A *kapture folder* holds `sensors/sensors.txt` and `sensors/records_camera.txt`,
optionally `sensors/trajectories.txt` and `sensors/rigs.txt`; images live under
`sensors/records_data/`.

- `sensors.txt`: `sensor_id, name, sensor_type, [params]+`; `camera` sensors carry
  `MODEL, width, height, params...` with COLMAP model names and COLMAP's conventions.
  Other sensor types (depth, wifi, gnss, ...) are ignored.
- `records_camera.txt`: `timestamp, sensor_id, image_path` (relative to `records_data/`).
- `trajectories.txt`: `timestamp, device_id, qw, qx, qy, qz, tx, ty, tz` =
  **world-to-device** (`device_from_world`, Hamilton quaternion, w first). The device
  is either the camera itself or a rig.
- `rigs.txt`: `rig_id, sensor_id, qw, qx, qy, qz, tx, ty, tz` = **rig-to-sensor**
  (`sensor_from_rig`), so `cam_from_world = sensor_from_rig * rig_from_world`.
  One rig level is supported.

Accepted paths:

1. a single kapture folder: frame names are the `records_data` relative paths, no
   official split;
2. a folder whose sub-folders are kapture folders (`mapping/` + `query/` as in
   `virtual_gallery_tutorial`, `training/` + `query/` as in
   `aachen_day_night_sample/kapture`): one Scene, frame names prefixed with the
   sub-folder name (`mapping/...`, `query/...`) to stay unique, and an official split
   `"official"` = (mapping or training sub-folder, query sub-folder).
   Only the known sub-folder names (`mapping`, `training`, `map`, `query`, `queries`,
   `testing`, `test`, `validation`) are loaded when present, so that e.g. a
   `map_plus_query/` copy does not duplicate frames.

Frames whose record has no trajectory entry (Aachen queries) get
`cam_from_world=None`. Frames whose image file is missing are skipped (noted in
`scene.notes`). If `sensors/records_data/` does not exist (the Aachen sample ships the
images separately), the images are looked up under `images_upright/` or `images/` of
the enclosing folders (up to three levels up), as kapture-localization's symlink would
provide; the folder used is noted in `scene.notes`.

Units are whatever the dataset uses (metres for Virtual Gallery; `metric` is left
True since kapture does not say otherwise).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ...geometry import Camera, Pose
from ..registry import register
from ..scene import Frame, Scene

MAP_NAMES = ("mapping", "training", "map")
QUERY_NAMES = ("query", "queries", "testing", "test", "validation")
_IMAGE_DIR_NAMES = ("images_upright", "images")


# ---------------------------------------------------------------- detection
def _is_kapture_dir(path: Path) -> bool:
    sensors = path / "sensors"
    if not ((sensors / "sensors.txt").is_file() and (sensors / "records_camera.txt").is_file()):
        return False
    try:
        with open(sensors / "sensors.txt", encoding="utf-8", errors="replace") as f:
            head = f.read(256)
    except OSError:
        return False
    return head.lstrip().lower().startswith("# kapture format")


def _sub_kaptures(path: Path) -> list[Path]:
    subs = sorted(p for p in path.iterdir() if p.is_dir() and _is_kapture_dir(p))
    known = [p for p in subs if p.name in MAP_NAMES + QUERY_NAMES]
    return known or subs


def detect(path: Path) -> bool:
    path = Path(path)
    if not path.is_dir():
        return False
    if _is_kapture_dir(path):
        return True
    try:
        return bool(_sub_kaptures(path))
    except OSError:
        return False


# ---------------------------------------------------------------- parsing
def _rows(file: Path, min_fields: int):
    """Yield (line number, stripped comma-separated fields) of a kapture text file."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: cannot read kapture file: {e}") from None
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        fields = [x.strip() for x in s.split(",")]
        if len(fields) < min_fields:
            raise DataError(f"{file}:{i}: expected at least {min_fields} comma-separated fields, "
                            f"got {len(fields)}: {s!r}")
        yield i, fields


def _floats(file: Path, lineno: int, values: list[str]) -> list[float]:
    try:
        return [float(v) for v in values]
    except ValueError:
        raise DataError(f"{file}:{lineno}: expected numbers, got {values}") from None


def _pose(file: Path, lineno: int, values: list[str]) -> Pose:
    if len(values) != 7:
        raise DataError(f"{file}:{lineno}: expected 7 pose values (qw qx qy qz tx ty tz), got {len(values)}")
    v = _floats(file, lineno, values)
    try:
        return Pose.from_qt(v[:4], v[4:])
    except DataError as e:
        raise DataError(f"{file}:{lineno}: {e}") from None


def _timestamp(ts: str):
    try:
        return int(ts)
    except ValueError:
        try:
            return float(ts)
        except ValueError:
            return ts


def _read_cameras(file: Path) -> dict[str, Camera]:
    cams = {}
    for i, f in _rows(file, 3):
        sensor_id, _name, stype, params = f[0], f[1], f[2].lower(), f[3:]
        if stype != "camera":
            continue
        if len(params) < 4:
            raise DataError(f"{file}:{i}: camera sensor {sensor_id!r} needs 'MODEL, width, height, params...'")
        try:
            cams[sensor_id] = Camera.from_string(" ".join(params))
        except DataError as e:
            raise DataError(f"{file}:{i}: sensor {sensor_id!r}: {e}") from None
    return cams


def _read_trajectories(file: Path) -> dict[tuple, Pose]:
    if not file.is_file():
        return {}
    out = {}
    for i, f in _rows(file, 2):
        out[(_timestamp(f[0]), f[1])] = _pose(file, i, f[2:])
    return out


def _read_rigs(file: Path) -> dict[str, dict[str, Pose]]:
    """rig_id -> sensor_id -> sensor_from_rig."""
    if not file.is_file():
        return {}
    rigs: dict[str, dict[str, Pose]] = {}
    for i, f in _rows(file, 2):
        rigs.setdefault(f[0], {})[f[1]] = _pose(file, i, f[2:])
    return rigs


def _image_root(kdir: Path, rel_paths: list[str], notes: list[str], label: str) -> Path:
    root = kdir / "sensors" / "records_data"
    if root.is_dir() or not rel_paths:
        return root
    for up in list(kdir.parents)[:3]:
        for name in _IMAGE_DIR_NAMES:
            cand = up / name
            if cand.is_dir() and any((cand / r).is_file() for r in rel_paths):
                notes.append(f"{label}: no sensors/records_data/; images taken from {cand}")
                return cand
    return root


def _load_kapture_dir(kdir: Path, prefix: str, notes: list[str]) -> list[Frame]:
    sensors = kdir / "sensors"
    label = prefix.rstrip("/") or kdir.name
    cams = _read_cameras(sensors / "sensors.txt")
    traj = _read_trajectories(sensors / "trajectories.txt")
    rigs = _read_rigs(sensors / "rigs.txt")
    sensor_rig = {s: (rig, p) for rig, members in rigs.items() for s, p in members.items()}

    rec_file = sensors / "records_camera.txt"
    records = []
    for i, f in _rows(rec_file, 3):
        ts, sensor_id, rel = _timestamp(f[0]), f[1], ",".join(f[2:]).strip()
        if sensor_id not in cams:
            raise DataError(f"{rec_file}:{i}: sensor {sensor_id!r} is not a camera in sensors.txt")
        records.append((ts, sensor_id, rel))

    root = _image_root(kdir, [r[2] for r in records], notes, label)
    frames, missing, unposed = [], 0, 0
    for ts, sensor_id, rel in records:
        image = root / rel
        if not image.is_file():
            missing += 1
            continue
        pose = traj.get((ts, sensor_id))
        if pose is None and sensor_id in sensor_rig:
            rig_id, sensor_from_rig = sensor_rig[sensor_id]
            rig_from_world = traj.get((ts, rig_id))
            if rig_from_world is not None:
                pose = sensor_from_rig * rig_from_world
        unposed += pose is None
        frames.append(Frame(
            name=prefix + rel, camera=cams[sensor_id], image_path=image, cam_from_world=pose,
            timestamp=float(ts) if isinstance(ts, (int, float)) else None, sensor=sensor_id))
    if missing:
        notes.append(f"{label}: {missing} of {len(records)} records skipped (image file missing under {root})")
    if unposed:
        notes.append(f"{label}: {unposed} frames without a trajectory entry (no ground-truth pose)")
    return frames


# ---------------------------------------------------------------- loading
def load(path: Path) -> Scene:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"kapture: {path} is not a directory")
    name = path.parent.name if path.name == "kapture" else path.name
    notes: list[str] = []
    if _is_kapture_dir(path):
        frames = _load_kapture_dir(path, "", notes)
        return Scene(name=name, root=path, format="kapture", frames=frames, notes=notes)

    subs = _sub_kaptures(path)
    if not subs:
        raise DataError(f"kapture: {path} is neither a kapture folder (sensors/sensors.txt, "
                        f"sensors/records_camera.txt) nor a folder of kapture folders")
    frames, by_sub = [], {}
    for sub in subs:
        fr = _load_kapture_dir(sub, sub.name + "/", notes)
        by_sub[sub.name] = [f.name for f in fr]
        frames.extend(fr)
    splits = {}
    map_sub = next((n for n in MAP_NAMES if n in by_sub), None)
    query_sub = next((n for n in QUERY_NAMES if n in by_sub), None)
    if map_sub and query_sub:
        splits["official"] = (by_sub[map_sub], by_sub[query_sub])
    return Scene(name=name, root=path, format="kapture", frames=frames, official_splits=splits, notes=notes)


register("kapture", detect, load)
