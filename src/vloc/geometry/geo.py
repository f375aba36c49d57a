"""Geo-registration: GPS (WGS84 latitude, longitude, altitude) to map coordinates.
A map is geo-registered by the WGS84 position of its origin: its x axis points east
(rotated by `yaw_deg` counter-clockwise about up), y north, z up, in metres times
`scale` map units. Standard WGS84 -> ECEF -> local ENU formulas, written out here
because they are 20 lines and no dependency of vloc has them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

_A = 6378137.0                      # WGS84 semi-major axis (m)
_E2 = 6.69437999014e-3              # first eccentricity squared


def ecef_from_wgs84(lat_deg: float, lon_deg: float, alt_m: float) -> np.ndarray:
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    n = _A / math.sqrt(1.0 - _E2 * math.sin(lat) ** 2)
    return np.array([(n + alt_m) * math.cos(lat) * math.cos(lon),
                     (n + alt_m) * math.cos(lat) * math.sin(lon),
                     (n * (1.0 - _E2) + alt_m) * math.sin(lat)])


def enu_from_ecef_rotation(lat_deg: float, lon_deg: float) -> np.ndarray:
    """Rows: east, north, up at (lat, lon), in ECEF."""
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    sl, cl, sp, cp = math.sin(lon), math.cos(lon), math.sin(lat), math.cos(lat)
    return np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp], [cp * cl, cp * sl, sp]])


@dataclass(frozen=True)
class GeoRegistration:
    lat: float
    lon: float
    alt: float = 0.0
    yaw_deg: float = 0.0            # angle from east to the map's x axis, counter-clockwise
    scale: float = 1.0              # map units per metre

    def __post_init__(self):
        if not (-90 <= self.lat <= 90 and -180 <= self.lon <= 180):
            raise DataError(f"geo-registration origin out of range: lat {self.lat}, lon {self.lon}")
        if not self.scale > 0:
            raise DataError(f"geo-registration scale must be positive, got {self.scale}")

    @classmethod
    def from_dict(cls, d: dict) -> GeoRegistration:
        try:
            return cls(**{k: float(v) for k, v in d.items()})
        except TypeError as e:
            raise DataError(f"bad geo-registration {d}: {e}") from None

    def map_from_wgs84(self, lat: float, lon: float, alt: float | None = None) -> np.ndarray:
        """(x, y, z) in map units; z is NaN when the altitude is unknown."""
        d = ecef_from_wgs84(lat, lon, self.alt if alt is None else alt) - ecef_from_wgs84(self.lat, self.lon, self.alt)
        e, n, u = enu_from_ecef_rotation(self.lat, self.lon) @ d
        c, s = math.cos(math.radians(self.yaw_deg)), math.sin(math.radians(self.yaw_deg))
        xyz = self.scale * np.array([c * e + s * n, -s * e + c * n, u])
        if alt is None:
            xyz[2] = np.nan
        return xyz


def _rational(v) -> float:
    if isinstance(v, tuple):            # (num, den) in older Pillow
        return float(v[0]) / float(v[1]) if v[1] else float("nan")
    return float(v)


def gps_from_exif(path) -> tuple[float, float, float | None] | None:
    """(lat, lon, alt or None) from an image's EXIF GPS tags; None if it has none."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(Path(path)) as im:
            gps = im.getexif().get_ifd(0x8825)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read EXIF of {path}: {e}") from None
    if not gps or 2 not in gps or 4 not in gps:
        return None

    def dms(v) -> float:
        d, m, s = (_rational(x) for x in v)
        return d + m / 60.0 + s / 3600.0

    lat = dms(gps[2]) * (-1 if str(gps.get(1, "N")).upper().startswith("S") else 1)
    lon = dms(gps[4]) * (-1 if str(gps.get(3, "E")).upper().startswith("W") else 1)
    alt = None
    if 6 in gps:
        below = gps.get(5, 0)
        below = below[0] if isinstance(below, (bytes, bytearray)) and below else below
        alt = _rational(gps[6]) * (-1 if below == 1 else 1)
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    return lat, lon, alt
