"""The benchmark scenes: every scene of ../shared/data with query ground truth, the
splits of issue 2, and hloc's figures measured on this machine kind for reference."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import vloc

# (scene path relative to the data folder, split, hloc reference from the issue:
#  median t (cm, or % of scale), median r (deg), recall 5cm/5deg (or 1%/5deg), s/query, s/map)
SCENES = [
    ("strecha/fountain-P11", "leave-one-out", (0.36, 0.024, 1.00, 3.42, 21.4)),
    ("strecha/Herz-Jesus-P8", "leave-one-out", (0.66, 0.027, 1.00, 2.99, 13.4)),
    ("middlebury_temple/templeRing", "odd-even", (0.08, 0.088, 1.00, 0.53, 3.1)),
    ("middlebury_temple/templeSparseRing", "leave-one-out", (6.97, 7.586, 0.44, 0.61, 5.9)),
    ("tum_fr3_long_office_household", "alternate-seconds", (0.56, 0.239, 1.00, 0.89, 12.3)),
    ("nerf_fox", "every-5", (0.045, 0.011, 1.00, 5.10, 61.3)),
    ("virtual_gallery_tutorial", "official", (0.32, 0.053, 1.00, 1.63, 13.2)),
    # the demo scene: no hloc reference; the issue asks >= 95 % within 5 cm / 5 deg
    ("synthetic_room (vloc demo)", "official", (float("inf"), float("inf"), 0.95, float("inf"), float("inf"))),
]
SYNTHETIC = "synthetic_room (vloc demo)"

# issue 7's reference: hloc with ALIKED-n16 + LightGlue (resize_max 1024, each query
# matched against every map image) on this machine kind, same splits. Per scene:
# (median t cm, median r deg, recall 5cm/5deg, s/query). vloc with a learned feature
# must reach the recall, medians <= 1.1x and s/query <= 0.1x of these.
LEARNED_REFERENCE = {
    "strecha/fountain-P11": (0.27, 0.022, 1.00, 58.4),
    "strecha/Herz-Jesus-P8": (0.47, 0.022, 1.00, 33.7),
    "middlebury_temple/templeRing": (0.08, 0.069, 1.00, 7.7),
    "middlebury_temple/templeSparseRing": (0.14, 0.141, 0.75, 10.4),
    "tum_fr3_long_office_household": (0.58, 0.293, 1.00, 12.6),
    "virtual_gallery_tutorial": (0.35, 0.063, 1.00, 15.4),
}


def map_config(features: str, options: list[str]):
    """A MapConfig from --features and --map KEY=VALUE options (typed as the field's default)."""
    from vloc.maps.config import MapConfig
    extra = {}
    for kv in options:
        key, _, value = kv.partition("=")
        if key not in MapConfig.__dataclass_fields__:
            raise SystemExit(f"unknown map option {key!r}")
        extra[key] = type(getattr(MapConfig, key))(value)
    return MapConfig(features=features, **extra)


def default_data() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def load_scene(data: Path, rel: str):
    if rel == SYNTHETIC:     # the demo's scene, rendered once into benchmarks/out
        from vloc.datasets.synthetic import SyntheticConfig, generate_scene
        return generate_scene(Path("benchmarks/out/synthetic_room"), SyntheticConfig())
    return vloc.Scene.load(data / rel)


def write_results(path: Path, meta: dict, payload: dict) -> None:
    """JSON with date, commit, machine and library versions added to `meta`."""
    from vloc.evaluation import versions
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"date": time.strftime("%Y-%m-%d"), "commit": commit, "machine": platform.node(),
            "cpu_count": os.cpu_count(), **meta, "versions": versions()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, **payload}, indent=1, default=str))
    print(f"JSON: {path}")
