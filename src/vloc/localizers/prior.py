"""Position priors for queries: typed by the user ("x,y[,z],r"), read from a query's
EXIF GPS through the map's geo-registration, or simulated from ground truth (GPS-like
noise) for evaluation."""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..geometry.geo import GeoRegistration, gps_from_exif
from .base import Prior


def parse_prior(text: str) -> Prior:
    """'x,y,r' or 'x,y,z,r' (map units)."""
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise DataError(f"bad prior {text!r}: expected x,y,radius or x,y,z,radius (numbers)") from None
    if len(vals) not in (3, 4):
        raise DataError(f"bad prior {text!r}: expected x,y,radius or x,y,z,radius")
    return Prior(tuple(vals[:-1]), vals[-1])


def prior_from_exif(image_path, geo: GeoRegistration, radius: float) -> Prior:
    gps = gps_from_exif(image_path)
    if gps is None:
        raise DataError(f"{image_path} has no EXIF GPS position")
    xyz = geo.map_from_wgs84(*gps)
    center = tuple(xyz) if np.isfinite(xyz[2]) else tuple(xyz[:2])
    return Prior(center, radius * geo.scale)


def simulated_priors(frames, radius: float, noise: float, seed: int = 0) -> dict[str, Prior]:
    """GPS-like priors for evaluation: each true camera centre moved by isotropic
    Gaussian noise of `noise` map units per axis (seeded), with the given radius."""
    rng = np.random.default_rng(seed)
    out = {}
    for f in frames:
        c = f.cam_from_world.center + rng.normal(0.0, noise, 3) if noise > 0 else f.cam_from_world.center
        out[f.name] = Prior(tuple(c), radius)
    return out
