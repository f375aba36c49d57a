"""HDF5 feature store: one group per image name with keypoints, descriptors,
scores, scales and the original image size. Plain files a user can open with h5py."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import MapError
from .base import Features


def _key(name: str) -> str:
    return name.replace("/", "|")   # image names may contain '/', HDF5 paths may not


def write_features(path: Path, features: dict[str, Features], mode: str = "w") -> None:
    """Write (mode 'w') or add to (mode 'a') a feature store."""
    with h5py.File(path, mode) as f:
        for name, feat in features.items():
            if _key(name) in f:
                del f[_key(name)]
            g = f.create_group(_key(name))
            g.create_dataset("keypoints", data=feat.keypoints.astype(np.float32))
            g.create_dataset("descriptors", data=feat.descriptors.astype(np.float16))
            g.create_dataset("scores", data=feat.scores.astype(np.float32))
            g.create_dataset("scales", data=feat.scales.astype(np.float32))
            g.attrs["image_size"] = np.asarray(feat.image_size, dtype=np.int64)
            g.attrs["name"] = name


class FeatureReader:
    """A feature store kept open for many small reads (one image's features in
    ~1 ms, its descriptors alone in ~0.2 ms; opening the file costs as much again)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise MapError(f"cannot read feature store {self.path}: {e}") from None

    def _group(self, name: str):
        try:
            return self.file[_key(name)]
        except KeyError:
            raise MapError(f"feature store {self.path} has no image {name}") from None

    def close(self) -> None:
        self.file.close()

    def names(self) -> list[str]:
        return sorted(k.replace("|", "/") for k in self.file)

    def num_keypoints(self, name: str) -> int:
        try:
            return int(self._group(name)["descriptors"].shape[0])
        except (OSError, KeyError) as e:
            raise MapError(f"cannot read feature store {self.path}: {e}") from None

    def keypoints(self, name: str) -> np.ndarray:
        try:
            return self._group(name)["keypoints"][()]
        except (OSError, KeyError) as e:
            raise MapError(f"cannot read feature store {self.path}: {e}") from None

    def descriptors(self, name: str) -> np.ndarray:
        try:
            return self._group(name)["descriptors"][()].astype(np.float32)
        except (OSError, KeyError) as e:
            raise MapError(f"cannot read feature store {self.path}: {e}") from None

    def features(self, name: str) -> Features:
        try:
            return _read_group(self._group(name))
        except (OSError, KeyError) as e:
            raise MapError(f"cannot read feature store {self.path}: {e}") from None


def _read_group(g) -> Features:
    return Features(g["keypoints"][()], g["descriptors"][()].astype(np.float32), g["scores"][()],
                    g["scales"][()], tuple(int(v) for v in g.attrs["image_size"]))


def read_features(path: Path, names=None) -> dict[str, Features]:
    out = {}
    try:
        with h5py.File(path, "r") as f:
            keys = list(f) if names is None else [_key(n) for n in names]
            for key in keys:
                if key not in f:
                    raise MapError(f"feature store {path} has no image {key.replace('|', '/')}")
                out[str(f[key].attrs["name"])] = _read_group(f[key])
    except (OSError, KeyError) as e:
        raise MapError(f"cannot read feature store {path}: {e}") from None
    return out

