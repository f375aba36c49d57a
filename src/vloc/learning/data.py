"""Training data for pose regression: the mapping frames' images at the network's
input size (in memory, uint8), true centres and rotations, intrinsics at that size,
and, for the reprojection loss, a few 3D points per frame; augmentation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets import Frame
from ..geometry import Camera
from ..imageio import read_rgb


def input_size(camera: Camera, image_size: int) -> tuple[int, int]:
    """(width, height) of the network input: the camera's image with its longer side
    `image_size` (never enlarged)."""
    s = min(1.0, image_size / max(camera.width, camera.height))
    return max(8, round(camera.width * s)), max(8, round(camera.height * s))


def to_network_input(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 1], resized (antialiased bilinear) to `size`;
    a VlocError for an array that is not an image."""
    from ..retrieval.dense import as_rgb01
    x = as_rgb01(image)
    if (x.shape[3], x.shape[2]) != tuple(size):
        x = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", antialias=True, align_corners=False)
    return x


@dataclass
class PoseData:
    images: torch.Tensor          # (N, 3, H, W) uint8
    centres: torch.Tensor         # (N, 3) world
    quaternions: torch.Tensor     # (N, 4) cam_from_world, w >= 0
    intrinsics: torch.Tensor      # (N, 4) fx, fy, cx, cy at the input size
    points: torch.Tensor | None   # (N, K, 3) world points seen by each frame
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def load_pose_data(frames: list[Frame], size: tuple[int, int], image_size: int, points_per_frame: int = 0,
                   virtual_depth: float = 1.0, progress: bool = True,
                   scene_points: dict[str, np.ndarray] | None = None) -> PoseData:
    """Read the frames (with poses) at the input `size`; with `points_per_frame`,
    each frame's points are drawn from `scene_points[name]` (the map points it sees,
    `triangulated_points`) where given, else a grid of pixels lifted with the frame's
    depth (or at `virtual_depth` without depth)."""
    from ..progress import progress_bar
    images, intr, pts = [], [], []
    for f in progress_bar(frames, "reading images", progress):
        img = read_rgb(f.image_path, image_size, f.name, f.camera)
        images.append((to_network_input(img, size)[0] * 255).round().to(torch.uint8))
        sx, sy = size[0] / f.camera.width, size[1] / f.camera.height
        intr.append([f.camera.fx * sx, f.camera.fy * sy, f.camera.cx * sx, f.camera.cy * sy])
        if points_per_frame and scene_points is not None and len(scene_points.get(f.name, ())):
            seen = scene_points[f.name]
            pick = np.random.default_rng([len(pts), 7]).choice(len(seen), points_per_frame,
                                                              replace=len(seen) < points_per_frame)
            pts.append(seen[np.sort(pick)])
        elif points_per_frame:
            pts.append(frame_points(f, points_per_frame, virtual_depth))
    centres = np.stack([f.cam_from_world.center for f in frames])
    quats = np.stack([f.cam_from_world.q for f in frames])
    return PoseData(torch.stack(images), torch.tensor(centres, dtype=torch.float32),
                    torch.tensor(quats, dtype=torch.float32), torch.tensor(intr, dtype=torch.float32),
                    torch.tensor(np.stack(pts), dtype=torch.float32) if pts else None, [f.name for f in frames])


def triangulated_points(frames: list[Frame], progress: bool = True) -> dict[str, np.ndarray]:
    """For each frame, the world points it observes in a structure map triangulated from
    the frames' known poses (vloc's own map builder, in a temporary folder)."""
    import tempfile
    from pathlib import Path
    from .._libs import pycolmap
    from ..maps.build import build_map
    from ..maps.config import MapConfig
    with tempfile.TemporaryDirectory() as tmp:
        build_map(frames, Path(tmp) / "map", MapConfig(points="triangulate"), progress=progress)
        rec = pycolmap.Reconstruction(str(Path(tmp) / "map" / "model"))
    return {im.name: np.array([rec.points3D[p.point3D_id].xyz for p in im.get_observation_points2D()]).reshape(-1, 3)
            for im in rec.images.values()}


def frame_points(frame: Frame, n: int, virtual_depth: float) -> np.ndarray:
    """(n, 3) world points in front of the frame's camera: a grid of pixels lifted with
    its depth where valid, else at `virtual_depth` (a scene-sized plane)."""
    cam = frame.camera
    k = int(np.ceil(np.sqrt(n)))
    u, v = np.meshgrid((np.arange(k) + 0.5) / k * cam.width, (np.arange(k) + 0.5) / k * cam.height)
    uv = np.stack([u.ravel(), v.ravel()], 1)[:n]
    z = np.full(len(uv), float(virtual_depth))
    if frame.has_depth:
        from ..maps.depth import read_depth
        depth = read_depth(frame)
        x = np.clip((uv[:, 0] * depth.shape[1] / cam.width).astype(int), 0, depth.shape[1] - 1)
        y = np.clip((uv[:, 1] * depth.shape[0] / cam.height).astype(int), 0, depth.shape[0] - 1)
        d = depth[y, x]
        ok = np.isfinite(d) & (d > 0)
        z[ok] = d[ok]
    xy = cam.unproject(uv)
    x_cam = np.concatenate([xy * z[:, None], z[:, None]], 1)
    pose = frame.cam_from_world
    return (x_cam - pose.t) @ pose.R          # world = R^T (x_cam - t)


def augment(images: torch.Tensor, intrinsics: torch.Tensor, generator: torch.Generator,
            jitter: float = 0.2, min_crop: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Brightness and contrast jitter (+-`jitter`) and a random crop of at least
    `min_crop` of each side, resized back; the intrinsics follow the crop."""
    b, _, h, w = images.shape
    r = torch.rand(b, 5, generator=generator)
    contrast = 1 + jitter * (2 * r[:, 0] - 1)
    brightness = jitter * (r[:, 1] - 0.5)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    x = ((images - mean) * contrast.view(b, 1, 1, 1) + mean + brightness.view(b, 1, 1, 1)).clamp(0, 1)
    s = min_crop + (1 - min_crop) * r[:, 2]
    out, intr = torch.empty_like(x), intrinsics.clone()
    for i in range(b):
        cw, ch = max(1, round(w * s[i].item())), max(1, round(h * s[i].item()))
        x0, y0 = int(r[i, 3] * (w - cw + 1)), int(r[i, 4] * (h - ch + 1))
        crop = x[i:i + 1, :, y0:y0 + ch, x0:x0 + cw]
        out[i] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
        sx, sy = w / cw, h / ch
        intr[i] = torch.stack([intr[i, 0] * sx, intr[i, 1] * sy, (intr[i, 2] - x0) * sx, (intr[i, 3] - y0) * sy])
    return out, intr
