"""Rigid pose from 3D-3D correspondences: Kabsch (SVD, batched) and a 3-point RANSAC
over camera points (from depth) and candidate scene coordinates, as in Shotton et al.
2013: a point is an inlier of a pose when some candidate of its pixel lands within a
threshold (metres) of it. Hypotheses come from 3 points whose camera and world
distances agree (rigidity) and that are not collinear; they are scored on a random
subset of points, or preemptively (Nistér 2005, as in Shotton et al.: scored on
batches of points, the worse half dropped after each batch); the best are refit on
their inliers among all points, and the winner optionally by a robust Tukey IRLS fit
with a tighter cut-off. PnP for colour-only queries goes through PoseLib
(`estimation.absolute`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import VlocError
from ..estimation import PoseConfig, PoseResult, estimate_absolute_pose
from ..geometry import Camera, Pose

FAR = 1e6                            # metres: where a missing candidate is put, never an inlier


@dataclass(frozen=True)
class KabschConfig:
    inlier_threshold: float = 0.1    # metres between a camera point and a transformed scene coordinate
    hypotheses: int = 256            # 3-point hypotheses that pass the rigidity check
    max_attempts: int = 100000       # triplets drawn at most to find them
    score_points: int = 500          # hypotheses are scored on this many random points (preemptive:
                                     # points per round)
    refine_top: int = 8              # best hypotheses refit on their inliers among all points
    refine_iterations: int = 5
    min_inliers: int = 150           # fewer -> a failed estimate (of 2000 query pixels on the small test
                                     # room: right poses had >= 270 inliers, wrong ones up to 124)
    seed: int = 0
    preemptive: bool = False         # score in rounds of `score_points` points, halving the hypotheses
                                     # after each, until `refine_top` are left
    final_threshold: float = 0.0     # metres, > 0: refit the winner by Tukey-biweight IRLS with this cut-off
    final_iterations: int = 10
    weighted_points: bool = False    # draw a triplet's points by their summed candidate weights (default:
                                     # uniformly), then a candidate of each by weight

    def __post_init__(self):
        if not (self.final_threshold >= 0 and self.final_iterations >= 1):
            raise VlocError("ransac: final_threshold >= 0 and final_iterations >= 1 are needed")

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


def _nearest(R, t, world, cam, dtype=np.float64):
    """Squared distance from each camera point to the nearest of its candidates moved
    by the pose: R (h, 3, 3), t (h, 3), world (n, k, 3) (no NaN: missing = FAR), cam
    (n, 3) -> (h, n), and that candidate (h, n). |R w + t - c| = |w - R^T (c - t)|,
    so only the camera points are transformed."""
    local = ((cam[None] - t[:, None]) @ R).astype(dtype)           # (h, n, 3): R^T (c - t)
    w = world.astype(dtype, copy=False)
    d2 = (w[None, :, :, 0] - local[:, :, None, 0]) ** 2
    d2 += (w[None, :, :, 1] - local[:, :, None, 1]) ** 2
    d2 += (w[None, :, :, 2] - local[:, :, None, 2]) ** 2
    best = d2.argmin(-1)
    return np.take_along_axis(d2, best[..., None], -1)[..., 0], best


def _residuals(R, t, world, cam):
    """Distance from each camera point to the nearest of its transformed candidates
    (NaN candidates allowed): (h, n), and the nearest candidate (h, n)."""
    world = np.where(np.isnan(world), FAR, world)
    d2, best = _nearest(np.asarray(R, np.float64), np.asarray(t, np.float64), world, np.asarray(cam, np.float64))
    return np.sqrt(d2), best


def _count(R, t, world, cam, threshold, chunk=64):
    """Inliers (h,) of each hypothesis among the points (float32 distances)."""
    return np.concatenate([(_nearest(R[i:i + chunk], t[i:i + chunk], world, cam, np.float32)[0] < threshold ** 2)
                           .sum(-1) for i in range(0, len(R), chunk)])


def _sample_hypotheses(cam, world, weights, cfg: KabschConfig, rng) -> tuple[np.ndarray, np.ndarray]:
    """Triplets of (point, candidate) whose camera and world distances agree (rigidity)
    and whose camera points are not collinear, drawn in batches until
    `cfg.hypotheses` pass or `cfg.max_attempts` were drawn."""
    n, k = world.shape[:2]
    cum = np.cumsum(weights, axis=-1)
    point_cum = np.cumsum(cum[:, -1]) if cfg.weighted_points else None
    src, dst, drawn = [], [], 0
    while drawn < cfg.max_attempts and sum(map(len, src)) < cfg.hypotheses:
        size = (min(8192, cfg.max_attempts - drawn), 3)
        if point_cum is None:
            rows = rng.integers(0, n, size=size)
        else:
            rows = np.searchsorted(point_cum, rng.random(size) * point_cum[-1], side="right").clip(0, n - 1)
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


def _scores(R, t, world, cam, idx, cfg: KabschConfig, rng) -> np.ndarray:
    """Which hypotheses go on to refinement, best first: by inliers among
    `cfg.score_points` random points, or preemptively."""
    if not cfg.preemptive:
        sub = rng.choice(idx, min(len(idx), cfg.score_points), replace=False)
        scores = _count(R, t, world[sub], cam[sub], cfg.inlier_threshold)
        return np.argsort(-scores, kind="stable")[:cfg.refine_top]
    order = rng.permutation(idx)
    alive, scores = np.arange(len(R)), np.zeros(len(R), np.int64)
    for start in range(0, len(order), cfg.score_points):
        if len(alive) <= cfg.refine_top:
            break
        b = order[start:start + cfg.score_points]
        scores[alive] += _count(R[alive], t[alive], world[b], cam[b], cfg.inlier_threshold)
        alive = alive[np.argsort(-scores[alive], kind="stable")[:max(cfg.refine_top, (len(alive) + 1) // 2)]]
    return alive[np.argsort(-scores[alive], kind="stable")][:cfg.refine_top]


def tukey_refine(R, t, world, cam, cutoff: float, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Iteratively reweighted Kabsch with Tukey's biweight w = (1 - (d / cutoff)^2)^2
    (0 beyond the cut-off), each point matched to its nearest candidate (world (n, k, 3),
    missing = FAR)."""
    for _ in range(iterations):
        d2, near = _nearest(R[None], t[None], world, cam)
        w = np.clip(1 - d2[0] / cutoff ** 2, 0, None) ** 2
        m = np.flatnonzero(w > 0)
        if len(m) < 3:
            break
        R_new, t_new = kabsch(world[m, near[0, m]], cam[m], w[m])
        done = np.abs(R_new - R).max() < 1e-9 and np.abs(t_new - t).max() < 1e-9
        R, t = R_new, t_new
        if done:
            break
    return R, t


def ransac_kabsch(points_cam: np.ndarray, points_world: np.ndarray, cfg: KabschConfig = KabschConfig(),
                  weights: np.ndarray | None = None) -> RigidResult:
    """cam_from_world from camera points (n, 3) and candidate scene coordinates (n, 3)
    or (n, k, 3) (NaN: no candidate), drawn by `weights` (n, k). Hypotheses from 3
    points, scored on a subset (or preemptively), the best refit on their inliers among
    all points; with `cfg.final_threshold` the winner is refit robustly."""
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
    world = np.where(valid[..., None], world, FAR)
    best = (None, none)
    for h in _scores(R, t, world, cam, idx, cfg, rng):
        Rh, th, inl = R[h], t[h], none
        for _ in range(cfg.refine_iterations):
            d2, nearest = _nearest(Rh[None], th[None], world, cam)
            new = d2[0] < cfg.inlier_threshold ** 2
            if new.sum() < 3 or np.array_equal(new, inl):
                break
            inl = new
            Rh, th = kabsch(world[inl, nearest[0, inl]], cam[inl])
        inl = _nearest(Rh[None], th[None], world, cam)[0][0] < cfg.inlier_threshold ** 2
        if inl.sum() > best[1].sum():
            best = ((Rh, th), inl)
    pose, inl = best
    if pose is not None and cfg.final_threshold > 0:
        pose = tukey_refine(*pose, world, cam, cfg.final_threshold, cfg.final_iterations)
        inl = _nearest(pose[0][None], pose[1][None], world, cam)[0][0] < cfg.inlier_threshold ** 2
    if inl.sum() < cfg.min_inliers:
        return RigidResult(None, inl, f"too few inliers ({int(inl.sum())} of {n} points, need {cfg.min_inliers})",
                           len(src))
    return RigidResult(Pose(*pose), inl, None, len(src))


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
