"""Match pictures: two images side by side with a line per match, inliers in green and
outliers in red, written as PNG (OpenCV drawing; no matplotlib needed).

Keypoints are in vloc's pixel convention (origin at the image's top-left corner, the
centre of pixel (0, 0) at (0.5, 0.5)) at the resolution of the images given."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._libs import cv2
from ..errors import DataError

__all__ = ["GAP", "GREEN", "RED", "TITLE_HEIGHT", "draw_matches", "save_match_plot"]

GREEN = (0, 255, 0)          # RGB
RED = (255, 0, 0)
GAP = 8                      # pixels between the two images
TITLE_HEIGHT = 28            # the title bar, when there is a title
_SHIFT = 4                   # sub-pixel bits for cv2 drawing


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise DataError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise DataError(f"expected a gray or RGB image, got shape {img.shape}")


def draw_matches(image0: np.ndarray, image1: np.ndarray, xy0, xy1, inliers=None, *,
                 title: str | None = None, max_lines: int = 0, seed: int = 0,
                 thickness: int = 1, dim: float = 0.8, antialias: bool = False) -> np.ndarray:
    """The match picture as an RGB uint8 array: image0 left, image1 right (top-aligned,
    `GAP` pixels apart, the lower one padded with black), a `TITLE_HEIGHT` bar above
    when `title` is given. `xy0`, `xy1`: (M, 2) matched points; `inliers`: (M,) bools
    (None: all inliers). Outliers are drawn first, inliers over them; each keypoint
    gets a small circle. `max_lines` > 0 draws a seeded random subset of that many
    (in the same inlier/outlier proportion). `dim` scales the images' brightness so
    the lines stand out. Lines are drawn in pure colours unless `antialias`."""
    a, b = _rgb(image0), _rgb(image1)
    xy0 = np.asarray(xy0, np.float64).reshape(-1, 2)
    xy1 = np.asarray(xy1, np.float64).reshape(-1, 2)
    if len(xy0) != len(xy1):
        raise DataError(f"{len(xy0)} points in image 0 but {len(xy1)} in image 1")
    inl = np.ones(len(xy0), bool) if inliers is None else np.asarray(inliers, bool).reshape(-1)
    if len(inl) != len(xy0):
        raise DataError(f"{len(inl)} inlier flags for {len(xy0)} matches")
    top = TITLE_HEIGHT if title else 0
    H = max(a.shape[0], b.shape[0])
    canvas = np.zeros((top + H, a.shape[1] + GAP + b.shape[1], 3), np.uint8)
    off = a.shape[1] + GAP
    canvas[top:top + a.shape[0], :a.shape[1]] = (a * dim).astype(np.uint8) if dim != 1 else a
    canvas[top:top + b.shape[0], off:] = (b * dim).astype(np.uint8) if dim != 1 else b
    idx = np.arange(len(xy0))
    if max_lines and len(idx) > max_lines:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_lines, replace=False))
    scale = 1 << _SHIFT
    style = cv2.LINE_AA if antialias else cv2.LINE_8
    for group, colour in ((idx[~inl[idx]], RED), (idx[inl[idx]], GREEN)):
        for i in group:
            # vloc pixels -> OpenCV's (pixel centres at integers), fixed point
            p = (int(round((xy0[i, 0] - 0.5) * scale)), int(round((xy0[i, 1] - 0.5 + top) * scale)))
            q = (int(round((xy1[i, 0] - 0.5 + off) * scale)), int(round((xy1[i, 1] - 0.5 + top) * scale)))
            cv2.line(canvas, p, q, colour, thickness, style, _SHIFT)
            cv2.circle(canvas, p, 2 * scale, colour, 1, style, _SHIFT)
            cv2.circle(canvas, q, 2 * scale, colour, 1, style, _SHIFT)
    if title:
        cv2.putText(canvas, title, (6, TITLE_HEIGHT - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def save_match_plot(path, image0: np.ndarray, image1: np.ndarray, xy0, xy1, inliers=None, **kw) -> Path:
    """`draw_matches(...)` written to `path` as PNG (folders made as needed)."""
    path = Path(path)
    img = draw_matches(image0, image1, xy0, xy1, inliers, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise DataError(f"cannot write {path}")
    return path
