"""LO-RANSAC for the absolute pose from 2D point to 3D line correspondences, written
here around PoseLib's minimal solver (PoseLib has no robust estimator for this problem,
and its generalized relative pose RANSAC hangs with one match per "camera").

- Hypotheses: 6 correspondences -> `gen_relpose_6pt` (solver.py), in a normalised frame.
- Sampling: progressive (PROSAC-like) when an order by match quality is given: the
  pool grows from the best-ranked matches to all of them over `progressive_iterations`.
- Scoring: MSAC (truncated squared residuals) of the angular point-to-line error,
  with the cheirality check.
- Local optimisation: each new best model is refit by non-linear least squares on
  its inliers (a few rounds, inliers re-selected), kept if it scores better.
- Stopping: adaptive (success probability over the best inlier ratio), at least
  `min_iterations`, at most `max_iterations` or `max_seconds`.
- Final: Cauchy-robust refinement on the inliers, inliers re-selected, and a last
  refit on the inliers within `final_error`; fewer than `min_inliers` (or than
  `min_inlier_ratio` of the matches) is a failure with its reason."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import VlocError
from .solver import denormalise, minimal_poses, normalise, refine, residuals

SAMPLE = 6


@dataclass(frozen=True)
class LineRansacConfig:
    max_error: float = 3.0          # inlier threshold in pixels at the extraction resolution
                                    # (scaled to the original image; then / focal -> angle)
    min_iterations: int = 50
    max_iterations: int = 5000
    max_seconds: float = 0.8        # time budget of the hypothesis loop (per query; refinement comes after)
    success_prob: float = 0.9999
    min_inliers: int = 25           # fewer inliers -> failed estimate
    min_inlier_ratio: float = 0.18  # and fewer than this share of the matches: with one constraint per match a
                                    # wrong pose fits 4-15 % of them (measured on sparsified clouds of the room
                                    # and nerf_fox); correct poses had >= 20 % (templeSparseRing: 24-30 %)
    progressive: bool = True        # PROSAC-like sampling by match quality when given
    progressive_iterations: int = 200   # iterations for the pool to grow to all matches
    lo_rounds: int = 2              # local optimisation: refits (inliers re-selected) per new best
    refine_loss: str = "cauchy"     # final refinement loss: linear, huber, cauchy
    final_error: float = 1.5        # last refinement on the inliers within this many pixels (0: max_error)
    refine_scale: float = 0.5       # its scale in pixels at the extraction resolution (measured: 0.5 gave
                                    # 1.3x the point map's median error on templeRing and the room, 1 px 1.5-1.9x)
    seed: int = 0

    def __post_init__(self):
        if self.max_error <= 0 or self.max_seconds <= 0:
            raise VlocError(f"max_error and max_seconds must be positive, got {self.max_error}, {self.max_seconds}")
        if not 0 <= self.min_inlier_ratio < 1:
            raise VlocError(f"min_inlier_ratio must be in [0, 1), got {self.min_inlier_ratio}")
        if not 0 < self.success_prob < 1:
            raise VlocError(f"success_prob must be in (0, 1), got {self.success_prob}")
        if self.min_iterations < 1 or self.max_iterations < self.min_iterations:
            raise VlocError(f"need 1 <= min_iterations <= max_iterations, got {self.min_iterations}, "
                            f"{self.max_iterations}")
        if self.refine_loss not in ("linear", "huber", "cauchy"):
            raise VlocError(f"refine_loss must be linear, huber or cauchy, got {self.refine_loss!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LineRansacResult:
    R: np.ndarray | None            # cam_from_world, map coordinates (None: failed)
    t: np.ndarray | None
    inliers: np.ndarray             # bool mask over the correspondences
    iterations: int = 0
    hypotheses: int = 0             # solver solutions scored
    reason: str | None = None
    seconds: float = 0.0

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def success(self) -> bool:
        return self.R is not None


def _needed(inlier_ratio: float, prob: float) -> float:
    w = inlier_ratio ** SAMPLE
    if w <= 0:
        return math.inf
    if w >= 1:
        return 0
    return math.log(1 - prob) / math.log(1 - w)


def ransac_lines(bearings: np.ndarray, anchors: np.ndarray, directions: np.ndarray, threshold: float,
                 cfg: LineRansacConfig = LineRansacConfig(), order: np.ndarray | None = None) -> LineRansacResult:
    """`bearings` (N, 3) unit rays of the query's keypoints (camera frame), matched to
    lines `anchors`, `directions` (N, 3) (map frame); `threshold`: angular inlier
    threshold (radians, sine of the angle) for `cfg.max_error` pixels (the final loss
    scale is threshold * refine_scale / max_error); `order`: correspondence indices
    best first."""
    t0 = time.perf_counter()
    n = len(bearings)
    none = np.zeros(n, bool)
    if n < SAMPLE:
        return LineRansacResult(None, None, none, reason=f"too few 2D-line matches ({n}, need >= {SAMPLE})")
    b = np.asarray(bearings, np.float64)
    v = np.asarray(directions, np.float64)
    a, centre, scale = normalise(anchors, v)
    rng = np.random.default_rng(cfg.seed)
    thr2 = threshold * threshold
    order = np.asarray(order, np.int64) if (order is not None and cfg.progressive) else None
    pool0 = min(n, max(2 * SAMPLE, n // 20))

    def score(R, t):
        r, front = residuals(R, t, a, v, b)
        e = np.where(front, np.minimum(r * r, thr2), thr2)
        return float(e.sum()), front & (r * r < thr2)

    best_cost, best, best_inl = math.inf, None, none
    needed = cfg.max_iterations
    it = hyps = 0
    while it < cfg.max_iterations and (it < cfg.min_iterations or it < needed):
        if it >= cfg.min_iterations and time.perf_counter() - t0 > cfg.max_seconds:
            break
        if order is not None and it < cfg.progressive_iterations:
            pool = pool0 + (n - pool0) * it // cfg.progressive_iterations
            s = order[rng.choice(pool, SAMPLE, replace=False)]
        else:
            s = rng.choice(n, SAMPLE, replace=False)
        it += 1
        for R, t in minimal_poses(a[s], v[s], b[s]):
            hyps += 1
            cost, inl = score(R, t)
            if cost >= best_cost:
                continue
            best_cost, best, best_inl = cost, (R, t), inl
            for _ in range(cfg.lo_rounds):          # local optimisation
                if best_inl.sum() <= SAMPLE:
                    break
                R2, t2 = refine(*best, a[best_inl], v[best_inl], b[best_inl], max_iterations=5)
                c2, inl2 = score(R2, t2)
                if c2 >= best_cost:
                    break
                best_cost, best, best_inl = c2, (R2, t2), inl2
            needed = min(cfg.max_iterations, _needed(best_inl.sum() / n, cfg.success_prob))
    seconds = time.perf_counter() - t0
    if best is None:
        return LineRansacResult(None, None, none, it, hyps, f"no pose hypothesis from {it} samples of {n} matches",
                                seconds)
    R, t = best
    for _ in range(2):                              # final robust refinement
        R2, t2 = refine(R, t, a[best_inl], v[best_inl], b[best_inl], loss=cfg.refine_loss,
                        scale=threshold * cfg.refine_scale / cfg.max_error, max_iterations=30)
        c2, inl2 = score(R2, t2)
        if inl2.sum() < best_inl.sum() * 0.99 and c2 > best_cost:
            break
        R, t, best_inl, best_cost = R2, t2, inl2, c2
    if 0 < cfg.final_error < cfg.max_error:         # last refinement on the tighter inliers
        r, front = residuals(R, t, a, v, b)
        tight = front & (np.abs(r) < threshold * cfg.final_error / cfg.max_error)
        if tight.sum() >= max(cfg.min_inliers, SAMPLE):
            R, t = refine(R, t, a[tight], v[tight], b[tight], loss=cfg.refine_loss,
                          scale=threshold * cfg.refine_scale / cfg.max_error, max_iterations=30)
            best_inl = score(R, t)[1]
    seconds = time.perf_counter() - t0
    k = int(best_inl.sum())
    need = max(cfg.min_inliers, int(math.ceil(cfg.min_inlier_ratio * n)))
    if k < need:
        return LineRansacResult(None, None, best_inl, it, hyps, f"too few inliers ({k} of {n} matches, need {need}: "
                                f"{cfg.min_inliers} and {100 * cfg.min_inlier_ratio:g} %)", seconds)
    R, t = denormalise(R, t, centre, scale)
    return LineRansacResult(R, t, best_inl, it, hyps, None, seconds)
