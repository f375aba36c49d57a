"""Rigid pose from 3D-3D correspondences: Kabsch (SVD, batched) and a 3-point RANSAC
over camera points (from depth) and candidate scene coordinates, as in Shotton et al.
2013 (an inlier when some candidate of the pixel lands within a threshold in metres);
PnP for colour-only queries goes through PoseLib (`estimation.absolute`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..estimation import PoseConfig, PoseResult, estimate_absolute_pose
from ..geometry import Camera, Pose


@dataclass(frozen=True)
class KabschConfig:
    inlier_threshold: float = 0.1    # metres between a camera point and a transformed scene coordinate
    hypotheses: int = 256            # 3-point hypotheses that pass the rigidity check
    max_attempts: int = 100000       # triplets drawn at most to find them
    score_points: int = 500          # hypotheses are scored on this many random points
    refine_top: int = 8              # best hypotheses refit on their inliers among all points
    refine_iterations: int = 5
    min_inliers: int = 150           # fewer -> a failed estimate (of 2000 query pixels on the small test
                                     # room: right poses had >= 270 inliers, wrong ones up to 124)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RigidResult:
    cam_from_world: Pose | None
    inliers: np.ndarray              # bool over the points
    reason: str | None = None
    hypotheses: int = 0

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def kabsch(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """R, t minimising sum w |R src + t - dst|^2. Batched: (..., n, 3) -> (..., 3, 3), (..., 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(src.shape[:-1]) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum(-1, keepdims=True)
    mu_s = np.einsum("...n,...ni->...i", w, src)
    mu_d = np.einsum("...n,...ni->...i", w, dst)
    H = np.einsum("...n,...ni,...nj->...ij", w, src - mu_s[..., None, :], dst - mu_d[..., None, :])
    U, _, Vt = np.linalg.svd(H)
    V = np.swapaxes(Vt, -1, -2)
    d = np.sign(np.linalg.det(V @ np.swapaxes(U, -1, -2)))
    V[..., :, 2] *= np.where(d == 0, 1.0, d)[..., None]         # a reflection -> the nearest rotation
    R = V @ np.swapaxes(U, -1, -2)
    return R, mu_d - np.einsum("...ij,...j->...i", R, mu_s)


def _residuals(R, t, world, cam):
    """Distance from each camera point to the nearest of its transformed candidates:
    R (h, 3, 3), world (n, k, 3), cam (n, 3) -> (h, n), and the nearest candidate (h, n)."""
    moved = np.einsum("hij,nkj->hnki", R, world) + t[:, None, None, :]
    d = np.linalg.norm(moved - cam[None, :, None, :], axis=-1)
    d = np.where(np.isnan(d), np.inf, d)
    best = d.argmin(-1)
    return np.take_along_axis(d, best[..., None], -1)[..., 0], best


def _sample_hypotheses(cam, world, weights, cfg: KabschConfig, rng) -> tuple[np.ndarray, np.ndarray]:
    """Triplets of (point, candidate) whose camera and world distances agree (rigidity),
    drawn in batches until `cfg.hypotheses` pass or `cfg.max_attempts` were drawn."""
    n, k = world.shape[:2]
    cum = np.cumsum(weights, axis=-1)
    src, dst, drawn = [], [], 0
    while drawn < cfg.max_attempts and sum(map(len, src)) < cfg.hypotheses:
        rows = rng.integers(0, n, size=(min(8192, cfg.max_attempts - drawn), 3))
        drawn += len(rows)
        rows = rows[(rows[:, 0] != rows[:, 1]) & (rows[:, 0] != rows[:, 2]) & (rows[:, 1] != rows[:, 2])]
        c = cum[rows]                                                # a candidate per point, by weight
        pick = (c < rng.random(rows.shape + (1,)) * c[..., -1:]).sum(-1).clip(0, k - 1)
        s, d = world[rows, pick], cam[rows]                          # (m, 3, 3)
        ok = np.isfinite(s).all((-1, -2))
        for a, b in ((0, 1), (0, 2), (1, 2)):
            ok &= np.abs(np.linalg.norm(s[:, a] - s[:, b], axis=-1)
                         - np.linalg.norm(d[:, a] - d[:, b], axis=-1)) < cfg.inlier_threshold
        ok &= np.linalg.norm(np.cross(d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]), axis=-1) > cfg.inlier_threshold ** 2
        src.append(s[ok])
        dst.append(d[ok])
    return np.concatenate(src)[:cfg.hypotheses], np.concatenate(dst)[:cfg.hypotheses]


def ransac_kabsch(points_cam: np.ndarray, points_world: np.ndarray, cfg: KabschConfig = KabschConfig(),
                  weights: np.ndarray | None = None) -> RigidResult:
    """cam_from_world from camera points (n, 3) and candidate scene coordinates (n, 3)
    or (n, k, 3) (NaN: no candidate), drawn by `weights` (n, k). Hypotheses from 3
    points, scored on a subset, the best refit on their inliers among all points."""
    cam = np.asarray(points_cam, np.float64)
    world = np.asarray(points_world, np.float64)
    world = world[:, None] if world.ndim == 2 else world
    n = len(cam)
    valid = np.isfinite(world).all(-1)
    w = np.where(valid, 1.0 if weights is None else np.asarray(weights, np.float64), 0.0)
    usable = w.sum(-1) > 0
    none = np.zeros(n, bool)
    if usable.sum() < 3:
        return RigidResult(None, none, f"too few points with a scene coordinate ({int(usable.sum())}, need >= 3)")
    rng = np.random.default_rng(cfg.seed)
    idx = np.flatnonzero(usable)
    src, dst = _sample_hypotheses(cam[idx], world[idx], w[idx], cfg, rng)
    if not len(src):
        return RigidResult(None, none, f"no rigid 3-point hypothesis among {len(idx)} points")
    R, t = kabsch(src, dst)
    score_idx = rng.choice(idx, min(len(idx), cfg.score_points), replace=False)
    scores = np.concatenate([(_residuals(R[i:i + 64], t[i:i + 64], world[score_idx], cam[score_idx])[0]
                              < cfg.inlier_threshold).sum(-1) for i in range(0, len(R), 64)])
    best = (None, none)
    for h in np.argsort(-scores, kind="stable")[:cfg.refine_top]:
        Rh, th, inl = R[h], t[h], none
        for _ in range(cfg.refine_iterations):
            d, nearest = _residuals(Rh[None], th[None], world, cam)
            new = d[0] < cfg.inlier_threshold
            if new.sum() < 3 or np.array_equal(new, inl):
                break
            inl = new
            Rh, th = kabsch(world[inl, nearest[0, inl]], cam[inl])
        inl = _residuals(Rh[None], th[None], world, cam)[0][0] < cfg.inlier_threshold
        if inl.sum() > best[1].sum():
            best = (Pose(Rh, th), inl)
    pose, inl = best
    if inl.sum() < cfg.min_inliers:
        return RigidResult(None, inl, f"too few inliers ({int(inl.sum())} of {n} points, need {cfg.min_inliers})",
                           len(src))
    return RigidResult(pose, inl, None, len(src))


def pnp_from_candidates(pixels: np.ndarray, points_world: np.ndarray, camera: Camera,
                        cfg: PoseConfig = PoseConfig()) -> tuple[PoseResult, int]:
    """Colour-only queries: every finite candidate scene coordinate (n, k, 3) of a pixel
    (n, 2) is a 2D-3D correspondence for PoseLib's LO-RANSAC. Returns the result and the
    number of correspondences."""
    world = np.asarray(points_world, np.float64)
    world = world[:, None] if world.ndim == 2 else world
    ok = np.isfinite(world).all(-1)
    p2d = np.repeat(np.asarray(pixels, np.float64)[:, None], world.shape[1], axis=1)[ok]
    return estimate_absolute_pose(p2d, world[ok], camera, cfg), int(ok.sum())
