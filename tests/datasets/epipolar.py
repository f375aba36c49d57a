"""Pose-convention check shared by the importer tests.

SIFT-match two frames' images and measure how well the matches agree with the epipolar
geometry of their ground-truth poses and cameras (Sampson error, in pixels of the
images resized to at most `max_size`). A right convention gives a fraction of a pixel;
a wrong one (inverted pose, transposed R, wrong axes) tens to hundreds of pixels.

    from tests.datasets.epipolar import median_epipolar_error
    err = median_epipolar_error(frame_a, frame_b)        # frames with pose and image

Keypoints are shifted by +0.5 px from OpenCV's convention into vloc's (COLMAP's).
Distortion is removed through `Camera.unproject`, so any camera model works.

For RGB-D data, `median_depth_disagreement(frame_a, frame_b)` checks poses and depth scale
together: frame_a's depth, back-projected and moved by the GT poses, must match frame_b's.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from vloc._libs import cv2  # cv2 before pycolmap
from vloc.datasets import Frame
from vloc.geometry import Camera
from vloc.imageio import read_image


@lru_cache(maxsize=32)
def _sift(path: str, max_size: int):
    """Keypoints (vloc convention, resized image), descriptors, and (sx, sy) resize factors."""
    img, (w, h) = read_image(path, grayscale=True, max_size=max_size)
    kps, desc = cv2.SIFT_create(nfeatures=8000).detectAndCompute(img, None)
    pts = np.array([k.pt for k in kps], dtype=np.float64).reshape(-1, 2) + 0.5
    return pts, desc, (img.shape[1] / w, img.shape[0] / h)


def sift_matches(frame_a: Frame, frame_b: Frame, max_size: int = 1024, ratio: float = 0.8):
    """Ratio-test SIFT matches: (pts_a, pts_b, camera_a, camera_b), all for the resized images."""
    pa, da, sa = _sift(str(frame_a.image_path), max_size)
    pb, db, sb = _sift(str(frame_b.image_path), max_size)
    if len(pa) < 2 or len(pb) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2)), frame_a.camera.scaled(*sa), frame_b.camera.scaled(*sb)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    ia = np.array([m.queryIdx for m in good], dtype=int)
    ib = np.array([m.trainIdx for m in good], dtype=int)
    return pa[ia], pb[ib], frame_a.camera.scaled(*sa), frame_b.camera.scaled(*sb)


def _undistorted_pixels(camera: Camera, pts: np.ndarray) -> np.ndarray:
    """Pixels -> pixels of the same camera without distortion (K @ normalized)."""
    xy = camera.unproject(pts)
    return xy * [camera.fx, camera.fy] + [camera.cx, camera.cy]


def epipolar_errors(frame_a: Frame, frame_b: Frame, max_size: int = 1024, ratio: float = 0.8) -> np.ndarray:
    """Sampson errors (px, resized images) of all SIFT matches under the frames' GT poses."""
    if not (frame_a.has_pose and frame_b.has_pose):
        raise ValueError(f"both frames need a pose: {frame_a.name}, {frame_b.name}")
    pts_a, pts_b, cam_a, cam_b = sift_matches(frame_a, frame_b, max_size, ratio)
    if len(pts_a) == 0:
        return np.zeros(0)
    b_from_a = frame_b.cam_from_world * frame_a.cam_from_world.inverse()
    t = b_from_a.t
    E = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ b_from_a.R
    F = np.linalg.inv(cam_b.K).T @ E @ np.linalg.inv(cam_a.K)
    xa = np.c_[_undistorted_pixels(cam_a, pts_a), np.ones(len(pts_a))]
    xb = np.c_[_undistorted_pixels(cam_b, pts_b), np.ones(len(pts_b))]
    Fxa, Ftxb = xa @ F.T, xb @ F
    num = np.abs(np.sum(xb * Fxa, axis=1))
    den = np.sqrt(Fxa[:, 0] ** 2 + Fxa[:, 1] ** 2 + Ftxb[:, 0] ** 2 + Ftxb[:, 1] ** 2)
    return num / np.maximum(den, 1e-12)


def median_epipolar_error(frame_a: Frame, frame_b: Frame, max_size: int = 1024,
                          min_matches: int = 30) -> float:
    """Median Sampson error (px, images resized to <= max_size) of the SIFT matches
    between two posed frames. Raises ValueError when there are too few matches."""
    err = epipolar_errors(frame_a, frame_b, max_size)
    if len(err) < min_matches:
        raise ValueError(f"only {len(err)} SIFT matches between {frame_a.name} and {frame_b.name}")
    return float(np.median(err))


def inverted(frame: Frame) -> Frame:
    """The frame with its pose inverted: the typical convention mistake, for negative checks."""
    return frame.with_pose(frame.cam_from_world.inverse())


def read_depth(frame: Frame) -> np.ndarray:
    """The frame's depth map in scene units (0 where invalid: 0 or 65535 in 16-bit files)."""
    d = cv2.imread(str(frame.depth_path), cv2.IMREAD_UNCHANGED)
    if d is None:
        raise ValueError(f"cannot read depth {frame.depth_path}")
    d = d.astype(np.float64)
    d[d >= 65535] = 0
    return d * frame.depth_scale


def median_depth_disagreement(frame_a: Frame, frame_b: Frame, depth_camera: Camera | None = None,
                              step: int = 4, min_points: int = 500) -> float:
    """Back-project frame_a's depth with its GT pose, project into frame_b and return the
    median |z - depth_b| (scene units) over points that land on a valid depth of frame_b.
    `depth_camera` is the depth sensor's camera when depth is not registered to the colour
    camera (then the poses are taken as the depth sensor's)."""
    cam = depth_camera or frame_a.camera
    da, db = read_depth(frame_a), read_depth(frame_b)
    v, u = np.mgrid[0:da.shape[0]:step, 0:da.shape[1]:step]
    z = da[v, u]
    ok = z > 0
    xy = cam.unproject(np.c_[u[ok] + 0.5, v[ok] + 0.5])  # pixel centres, vloc convention
    X_b = (frame_b.cam_from_world * frame_a.cam_from_world.inverse()).transform(np.c_[xy * z[ok, None], z[ok]])
    front = X_b[:, 2] > 1e-6
    X_b = X_b[front]
    iu, iv = np.floor((depth_camera or frame_b.camera).project(X_b)).astype(int).T
    inside = (iu >= 0) & (iv >= 0) & (iu < db.shape[1]) & (iv < db.shape[0])
    z_b = db[iv[inside], iu[inside]]
    valid = z_b > 0
    if valid.sum() < min_points:
        raise ValueError(f"only {valid.sum()} depth points of {frame_a.name} land on {frame_b.name}")
    return float(np.median(np.abs(X_b[inside][valid, 2] - z_b[valid])))
