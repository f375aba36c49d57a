"""Cameras with COLMAP's models and COLMAP's pixel convention: the image origin is
the top-left *corner*, so the centre of pixel (0, 0) is at (0.5, 0.5). OpenCV
keypoints are shifted by +0.5 when they enter vloc."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

# model name -> parameter names (COLMAP order)
CAMERA_MODELS: dict[str, tuple[str, ...]] = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
    "OPENCV_FISHEYE": ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"),
    "FULL_OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
    "FOV": ("fx", "fy", "cx", "cy", "omega"),
    "SIMPLE_RADIAL_FISHEYE": ("f", "cx", "cy", "k"),
    "RADIAL_FISHEYE": ("f", "cx", "cy", "k1", "k2"),
    "THIN_PRISM_FISHEYE": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1"),
}
_PINHOLE_LIKE = {"SIMPLE_PINHOLE", "PINHOLE"}


@dataclass(frozen=True)
class Camera:
    """An intrinsic calibration: COLMAP model name, image size and parameters."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def __post_init__(self):
        model = str(self.model).upper()
        if model not in CAMERA_MODELS:
            raise DataError(f"unknown camera model {self.model!r}; known: {', '.join(CAMERA_MODELS)}")
        params = tuple(float(p) for p in self.params)
        names = CAMERA_MODELS[model]
        if len(params) != len(names):
            raise DataError(f"camera model {model} takes {len(names)} parameters "
                            f"({' '.join(names)}), got {len(params)}")
        if not all(np.isfinite(params)):
            raise DataError(f"camera parameters must be finite, got {list(params)}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise DataError(f"camera size must be positive, got {self.width}x{self.height}")
        focals = [p for n, p in zip(names, params) if n in ("f", "fx", "fy")]
        if min(focals) <= 0:
            raise DataError(f"camera focal length must be positive, got {focals}")
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "params", params)

    # construction ---------------------------------------------------------
    @classmethod
    def from_string(cls, text: str) -> Camera:
        """'MODEL WIDTH HEIGHT P1 P2 ...', as in COLMAP's cameras.txt (without the id)."""
        parts = text.replace(",", " ").split()
        if len(parts) < 4:
            raise DataError(f"camera string must be 'MODEL WIDTH HEIGHT PARAMS...', got {text!r}")
        try:
            w, h = int(parts[1]), int(parts[2])
            params = [float(p) for p in parts[3:]]
        except ValueError as e:
            raise DataError(f"bad camera string {text!r}: {e}") from None
        return cls(parts[0], w, h, tuple(params))

    @classmethod
    def pinhole(cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> Camera:
        return cls("PINHOLE", width, height, (fx, fy, cx, cy))

    def __str__(self) -> str:
        return f"{self.model} {self.width} {self.height} " + " ".join(f"{p:.6g}" for p in self.params)

    # views ----------------------------------------------------------------
    def _param(self, *names: str) -> float:
        for n in names:
            if n in CAMERA_MODELS[self.model]:
                return self.params[CAMERA_MODELS[self.model].index(n)]
        raise KeyError(names)

    @property
    def fx(self) -> float:
        return self._param("fx", "f")

    @property
    def fy(self) -> float:
        return self._param("fy", "f")

    @property
    def cx(self) -> float:
        return self._param("cx")

    @property
    def cy(self) -> float:
        return self._param("cy")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        if self.model in _PINHOLE_LIKE:
            return False
        names = CAMERA_MODELS[self.model]
        return any(p != 0 for n, p in zip(names, self.params) if n not in ("f", "fx", "fy", "cx", "cy"))

    def scaled(self, sx: float, sy: float | None = None) -> Camera:
        """The camera of the image resized by (sx, sy) (corner convention: exact)."""
        sy = sx if sy is None else sy
        names = CAMERA_MODELS[self.model]
        params = []
        for n, p in zip(names, self.params):
            if n in ("fx", "cx"):
                p *= sx
            elif n in ("fy", "cy"):
                p *= sy
            elif n == "f":
                p *= (sx + sy) / 2
            params.append(p)
        return Camera(self.model, round(self.width * sx), round(self.height * sy), tuple(params))

    def to_poselib(self) -> dict:
        return {"model": self.model, "width": self.width, "height": self.height, "params": list(self.params)}

    def to_pycolmap(self, camera_id: int | None = None):
        from .._libs import pycolmap
        cam = pycolmap.Camera(model=self.model, width=self.width, height=self.height, params=list(self.params))
        if camera_id is not None:
            cam.camera_id = camera_id
        return cam

    @classmethod
    def from_pycolmap(cls, cam) -> Camera:
        return cls(cam.model.name, cam.width, cam.height, tuple(cam.params))

    # projection -----------------------------------------------------------
    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, 3) points in camera coordinates to (N, 2) pixels (distortion applied)."""
        p = np.ascontiguousarray(np.asarray(points_cam, dtype=np.float64).reshape(-1, 3))
        if self.model in _PINHOLE_LIKE:
            uv = p[:, :2] / p[:, 2:3]
            return uv * [self.fx, self.fy] + [self.cx, self.cy]
        return np.asarray(self.to_pycolmap().img_from_cam(p), dtype=np.float64).reshape(-1, 2)

    def unproject(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) pixels to (N, 2) normalized image coordinates (distortion removed)."""
        uv = np.ascontiguousarray(np.asarray(pixels, dtype=np.float64).reshape(-1, 2))
        if self.model in _PINHOLE_LIKE:
            return (uv - [self.cx, self.cy]) / [self.fx, self.fy]
        xyz = np.asarray(self.to_pycolmap().cam_from_img(uv), dtype=np.float64)
        return xyz[:, :2] / xyz[:, 2:3] if xyz.shape[1] == 3 else xyz
