"""A dense feature pyramid of an image from kornia's ALIKED backbone (packaged
weights): its four scales, read before they are fused, make three levels:

- 0, coarse: the 1/32-resolution block (wide receptive field: a wide basin);
- 1, middle: the 1/8 block with the 1/32 one upsampled;
- 2, fine: the fused map ALIKED describes keypoints from (all four, full resolution).

Each level is L2-normalised per pixel. This is not PixLoc's network, which is trained
for the refinement; ALIKED's features are trained for matching, which gives a
narrower basin (see docs/refinement.md).

Coordinates: pixel (x, y) of the original image (COLMAP's convention, the first
pixel's centre at 0.5) is at level coordinate (x * sx / stride - 0.5, y * sy / stride - 0.5)
where sx, sy scale the original image to the network's input."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import VlocError

LEVELS = 3


@dataclass(frozen=True)
class PyramidConfig:
    model: str = "aliked-n16"
    image_size: int = 640          # longer side of the network's input

    def __post_init__(self):
        if self.image_size < 64:
            raise VlocError(f"image_size must be >= 64, got {self.image_size}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FeaturePyramid:
    """levels[l]: (h, w, D) float32; strides[l]: input pixels per cell; scale: (sx, sy)
    from original pixels to input pixels."""
    levels: list[np.ndarray]
    strides: tuple[int, ...]
    scale: tuple[float, float]

    def to_level(self, level: int, xy: np.ndarray) -> np.ndarray:
        """Original pixel coordinates (n, 2) -> coordinates on level `level`."""
        s = self.strides[level]
        return xy * np.asarray(self.scale) / s - 0.5

    def sample(self, level: int, uv: np.ndarray, gradient: bool = False):
        """Bilinear features (n, D) at level coordinates `uv` (n, 2), a validity mask
        (inside the map), and, if asked, the derivatives of the bilinear interpolant
        along u and v (each (n, D); as torch's grid_sample differentiates)."""
        fmap = self.levels[level]
        h, w = fmap.shape[:2]
        valid = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
        u = np.clip(np.where(valid, uv[:, 0], 0.0), 0, w - 1.000001)
        v = np.clip(np.where(valid, uv[:, 1], 0.0), 0, h - 1.000001)
        u0, v0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        a, b = (u - u0)[:, None].astype(fmap.dtype), (v - v0)[:, None].astype(fmap.dtype)
        f00, f01, f10, f11 = fmap[v0, u0], fmap[v0, u0 + 1], fmap[v0 + 1, u0], fmap[v0 + 1, u0 + 1]
        top, bottom = f00 + a * (f01 - f00), f10 + a * (f11 - f10)
        f = top + b * (bottom - top)
        if not gradient:
            return f, valid
        du = (1 - b) * (f01 - f00) + b * (f11 - f10)
        return f, valid, du, bottom - top


def feature_pyramid(image: np.ndarray, config: PyramidConfig = PyramidConfig(),
                    original_size: tuple[int, int] | None = None) -> FeaturePyramid:
    """The pyramid of a uint8 RGB (or gray) image; `original_size` (width, height): the
    size whose pixel coordinates the pyramid takes, when `image` was read reduced."""
    import torch
    import torch.nn.functional as F
    from ..imageio import resize_max
    from ..retrieval.dense import aliked_network, as_rgb01
    W, H = original_size or (image.shape[1], image.shape[0])
    small = resize_max(np.asarray(image), config.image_size)
    scale = (small.shape[1] / W, small.shape[0] / H)
    x = as_rgb01(small)
    net = aliked_network(config.model)
    with torch.inference_mode():
        from kornia.feature.aliked.aliked import InputPadder
        padder = InputPadder(x.shape[-2], x.shape[-1], 32)
        xp = padder.pad(x)
        x1 = net.block1(xp)
        x2 = net.block2(net.pool2(x1))
        x3 = net.block3(net.pool4(x2))
        x4 = net.block4(net.pool4(x3))
        g1, g2, g3, g4 = (net.gate(c(v)) for c, v in ((net.conv1, x1), (net.conv2, x2), (net.conv3, x3),
                                                        (net.conv4, x4)))
        fine = padder.unpad(torch.cat([g1, net.upsample2(g2), net.upsample8(g3), net.upsample32(g4)], dim=1))
        middle = torch.cat([g3, F.interpolate(g4, scale_factor=4, mode="bilinear", align_corners=False)], dim=1)
        h, w = x.shape[-2:]
        middle = middle[..., : -(-h // 8), : -(-w // 8)]
        coarse = g4[..., : -(-h // 32), : -(-w // 32)]
        levels = [F.normalize(t, dim=1)[0].permute(1, 2, 0).contiguous().numpy() for t in (coarse, middle, fine)]
    return FeaturePyramid(levels, (32, 8, 1), scale)
