"""Feature-metric pose refinement: minimise over the query's cam_from_world

    sum_i  c_i * rho( || F_q(pi(R X_i + t)) - f_i ||^2 )

where F_q is a level of the query's feature pyramid (bilinear), f_i the reference
feature of map point X_i, c_i its confidence and rho Cauchy's loss, by
Levenberg-Marquardt (iteratively reweighted), coarse level to fine (PixLoc, Sarlin et
al. CVPR 2021). Written here because no library does feature-metric alignment on CPU.

The update is a left perturbation exp(xi) * cam_from_world, xi = (v, w). Each level
aligns the points in view at its start; one that leaves the image or passes behind
the camera keeps the cost of a maximal residual (4: opposite unit features), so costs
of different poses compare fairly and no pose is preferred for showing more points. The Jacobian
uses the pinhole part of the camera; projection applies the distortion.

Before the first level, the start is turned about its own centre over a grid of yaw and
pitch angles (+-20° by 5° by default) to the turn with the lowest coarse cost: a start
whose view is shifted by more than the coarse features' basin (a few cells) converges
from there. The untouched start stays a candidate (`_best_start`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import VlocError
from ..geometry import Camera, Pose

MAX_RESIDUAL = 4.0          # squared distance of opposite unit vectors


@dataclass(frozen=True)
class RefineConfig:
    iterations: int = 40           # LM iterations per level at most
    tolerance: float = 1e-4        # a level stops when a step lowers its cost by less than this fraction
    robust_scale: float = 0.05     # Cauchy scale on squared feature distances
    inlier_threshold: float = 0.1  # squared feature distance on the fine level for a point to agree
    min_points: int = 30           # points in view of the starting pose needed
    min_inliers: int = 20          # points that agree at the end, or the refinement failed
    min_inlier_ratio: float = 0.2  # ... and this fraction of the points in view at the end
    outside_residual: float = MAX_RESIDUAL   # squared residual charged to a point out of view
    levels: tuple[int, ...] = (0, 1, 2)
    search_degrees: float = 20.0   # first turn the start about its centre by up to this (yaw / pitch
    search_step: float = 5.0       # grid) to the coarsest level's lowest cost (0: no search)

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(int(v) for v in self.levels))
        if self.iterations < 1 or self.robust_scale <= 0 or self.inlier_threshold <= 0:
            raise VlocError("refinement needs iterations >= 1 and positive robust_scale, inlier_threshold")
        if self.search_degrees < 0 or self.search_step <= 0:
            raise VlocError(f"search_degrees must be >= 0 and search_step > 0, got {self.search_degrees}, "
                            f"{self.search_step}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RefineResult:
    cam_from_world: Pose | None
    points: int                     # map points aligned (those of the chosen mapping images)
    inliers: int                    # of them, those that agree at the end
    reason: str | None = None
    levels: list[dict] = field(default_factory=list)    # per level: cost before, after, iterations
    in_view: int = 0                # points in view of the final pose


def _skew_neg(X: np.ndarray) -> np.ndarray:
    """-[X]x for each row: d(w x X)/dw."""
    z = np.zeros(len(X))
    x, y, w = X.T
    return np.stack([np.stack([z, w, -y], 1), np.stack([-w, z, x], 1), np.stack([y, -x, z], 1)], 1)


class _Level:
    """The cost and its Gauss-Newton system on one pyramid level."""

    def __init__(self, pyramid, level: int, camera: Camera, xyz, refs, confidence, config: RefineConfig):
        self.pyr, self.level, self.camera, self.xyz = pyramid, level, camera, xyz
        self.refs, self.conf, self.c, self.outside = refs, confidence, config.robust_scale, config.outside_residual
        s = pyramid.strides[level]
        self.d_level = np.asarray(pyramid.scale) / s          # level units per pixel (u, v)

    def _rho(self, s):
        return self.c * np.log1p(s / self.c)

    def evaluate(self, R, t, system: bool = False):
        Xc = self.xyz @ R.T + t
        front = Xc[:, 2] > 1e-6
        uv = self.pyr.to_level(self.level, self.camera.project(np.where(front[:, None], Xc, [0, 0, 1.0])))
        out = self.pyr.sample(self.level, uv, gradient=system)
        f, valid = out[0], out[1] & front
        r = f - self.refs
        sq = np.where(valid, np.einsum("nd,nd->n", r, r), self.outside)
        cost = float(np.sum(self.conf * self._rho(sq)))
        if not system:
            return cost, sq, valid
        du, dv = out[2], out[3]
        w = np.where(valid, self.conf / (1 + sq / self.c), 0.0)          # IRLS weights, rho'(s)
        x, y, z = Xc[valid].T if valid.any() else (np.zeros(0),) * 3
        n = int(valid.sum())
        fx, fy = self.camera.fx, self.camera.fy
        dpx = np.zeros((n, 2, 3))
        dpx[:, 0, 0], dpx[:, 0, 2] = fx / z, -fx * x / z**2
        dpx[:, 1, 1], dpx[:, 1, 2] = fy / z, -fy * y / z**2
        dpx *= self.d_level[None, :, None]
        A = np.einsum("nij,njk->nik", dpx, np.concatenate([np.broadcast_to(np.eye(3), (n, 3, 3)),
                                                            _skew_neg(Xc[valid])], axis=2))  # (n, 2, 6)
        du, dv, rv = du[valid], dv[valid], r[valid]
        GtG = np.empty((n, 2, 2))
        GtG[:, 0, 0], GtG[:, 1, 1] = np.einsum("nd,nd->n", du, du), np.einsum("nd,nd->n", dv, dv)
        GtG[:, 0, 1] = GtG[:, 1, 0] = np.einsum("nd,nd->n", du, dv)
        Gtr = np.stack([np.einsum("nd,nd->n", du, rv), np.einsum("nd,nd->n", dv, rv)], axis=1)
        wA = (A * w[valid][:, None, None]).reshape(-1, 6)
        H = wA.T @ np.matmul(GtG, A).reshape(-1, 6)
        g = wA.T @ Gtr.reshape(-1)
        return cost, sq, valid, H, g


def _best_start(L: _Level, candidates: list) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pose this (finer) level prefers, on the points in view from all of
    them: a coarser level's result is kept only if the finer features agree it is
    better than where that level started (a coarse level's minimum can be biased)."""
    if len(candidates) == 1:
        return candidates[0]
    evals = [L.evaluate(R, t) for R, t in candidates]
    common = np.logical_and.reduce([e[2] for e in evals])
    costs = [float(np.sum(L.conf[common] * L._rho(e[1][common]))) for e in evals]
    return candidates[int(np.argmin(costs))]


def _search_start(L: _Level, R: np.ndarray, t: np.ndarray, cost: float, config: RefineConfig):
    """The start (of coarsest-level `cost`) turned about its own centre (a yaw / pitch
    grid) to where that cost is lowest, all points counted (those out of view at the
    maximal cost)."""
    steps = np.arange(-config.search_degrees, config.search_degrees + 1e-9, config.search_step)
    best = (cost, R, t)
    for yaw in steps:
        for pitch in steps:
            if yaw == 0 and pitch == 0:
                continue
            dR = Rotation.from_euler("yx", [yaw, pitch], degrees=True).as_matrix()
            cost = L.evaluate(dR @ R, dR @ t)[0]
            if cost < best[0]:
                best = (cost, dR @ R, dR @ t)
    return best[1], best[2]


def refine_pose(pyramid, camera: Camera, cam_from_world: Pose, xyz: np.ndarray, refs: list[np.ndarray],
                confidence: np.ndarray, config: RefineConfig = RefineConfig()) -> RefineResult:
    """Refine `cam_from_world` so that the query's pyramid features at the projections
    of `xyz` (n, 3) match `refs[level]` (n, D_level); `confidence` (n,) weights points."""
    xyz = np.asarray(xyz, np.float64)
    confidence = np.asarray(confidence, np.float64)
    R, t = cam_from_world.R.copy(), cam_from_world.t.copy()
    start = _Level(pyramid, config.levels[0], camera, xyz, refs[config.levels[0]], confidence, config)
    start_cost, _, start_valid = start.evaluate(R, t)
    in_view = int(start_valid.sum())
    if in_view < config.min_points:
        return RefineResult(None, len(xyz), 0, f"too few map points in view of the starting pose "
                            f"({in_view} < {config.min_points})")
    history = []
    candidates = []                         # the start and each level's result
    if config.search_degrees > 0:
        candidates.append((R, t))
        R, t = _search_start(start, R, t, start_cost, config)
    for level in config.levels:
        L = _Level(pyramid, level, camera, xyz, np.asarray(refs[level], np.float32), confidence, config)
        candidates.append((R, t))
        R, t = _best_start(L, candidates)
        seen = L.evaluate(R, t)[2]          # the level aligns the points in view at its start only:
        L = _Level(pyramid, level, camera, xyz[seen], np.asarray(refs[level][seen], np.float32),
                   confidence[seen], config)  # bringing more points into view is no reward
        cost, _, _, H, g = L.evaluate(R, t, system=True)
        first, lam, it = cost, 1e-3, 0
        for it in range(1, config.iterations + 1):
            try:
                delta = -np.linalg.solve(H + lam * np.diag(np.diag(H)) + 1e-9 * np.eye(6), g)
            except np.linalg.LinAlgError:
                break
            dR = Rotation.from_rotvec(delta[3:]).as_matrix()
            R_new, t_new = dR @ R, dR @ t + delta[:3]
            # with its system at once: the gradient reuses the sampled corners, and an
            # accepted step (most are) needs it next
            new_cost, _, _, H_new, g_new = L.evaluate(R_new, t_new, system=True)
            if new_cost < cost:
                converged = cost - new_cost < config.tolerance * cost or np.linalg.norm(delta) < 1e-7
                R, t, cost, H, g, lam = R_new, t_new, new_cost, H_new, g_new, max(lam / 10, 1e-6)
                if converged:
                    break
            else:
                lam *= 10
                if lam > 1e4:
                    break
        history.append({"level": level, "cost_before": first, "cost_after": cost, "iterations": it})
    _, sq, valid = _Level(pyramid, config.levels[-1], camera, xyz, np.asarray(refs[config.levels[-1]], np.float32),
                          confidence, config).evaluate(R, t)
    inliers = int(np.sum(valid & (sq < config.inlier_threshold)))
    pose = Pose(R, t)
    seen = int(valid.sum())
    if inliers < max(config.min_inliers, config.min_inlier_ratio * seen):
        return RefineResult(None, len(xyz), inliers, f"refinement did not converge: {inliers} of the {seen} map "
                            f"points in view agree (feature distance² < {config.inlier_threshold}; needed "
                            f"{max(config.min_inliers, int(np.ceil(config.min_inlier_ratio * seen)))})", history, seen)
    return RefineResult(pose, len(xyz), inliers, None, history, seen)
