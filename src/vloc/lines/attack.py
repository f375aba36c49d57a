"""The attack on line clouds (Chelani, Kahl and Olsson, CVPR 2021): neighbouring 3D
points stay neighbours after lifting, so the lines of a point's neighbours pass close
to it. For each line:

1. coarse (Chelani et al.): its K nearest lines (line-to-line distance; nearly parallel
   ones left out), the point of the line closest to each of them, and the original
   point estimated as the peak of those closest points along the line (the sample
   with most others within a narrow window, then the window's mean, repeated);
2. refinement (ours): the surface around each estimate is fitted as a plane to the
   nearest other estimates (scipy cKDTree; trimmed PCA), and the line is intersected
   with it (kept when the line crosses the plane steeply enough and the estimate moves
   less than the neighbourhood's radius x 2); a few rounds. Measured on the room map:
   41 % -> 52 % of the points within 1 % of the extent, fountain-P11 67 % -> 72 %.
   (Chelani et al.'s own refinement, peaks re-taken over the lines in the intersection
   of "estimates near the line" and "lines near the estimate", was measured worse here.)

Written here (numpy): the nearest lines by blocked matrix products over the lines'
Plücker coordinates (squared distances ranked in float32), the peaks by a vectorised
window count over sorted rows, the plane fits batched.

`recovery` measures the estimates against the true points: the share within a
scene-relative threshold (a fraction of the points' extent) and within metric ones,
and the median error; the lines' stored anchors are scored the same way as a baseline."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import VlocError
from ..progress import progress_bar

# entries of a blocked distance matrix held at once (rows x lines): ~32 MB per float64 array
BLOCK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class AttackConfig:
    neighbours: int = 0            # K nearest lines of the coarse step (0: min(500, max(20, 5 % of the lines)),
                                   # as Chelani et al.)
    min_sine: float = 0.2          # lines within asin(0.2) ~ 11.5 deg of parallel give no closest point
    window: float = 0.25           # peak window half-width, x the median |deviation| of the closest points
    min_support: int = 3           # closest points in the peak window for an estimate
    peaks: int = 1                 # estimates per line (2 for paired-point lifting)
    plane_neighbours: int = 40     # refinement: estimates a local plane is fitted to
    plane_rounds: int = 3          # refinement rounds (0: coarse estimates only)
    plane_min_cos: float = 0.2     # the line must cross the plane at more than asin(0.2) ~ 11.5 deg

    def __post_init__(self):
        if self.neighbours < 0 or self.peaks < 1 or self.plane_rounds < 0 or self.plane_neighbours < 3:
            raise VlocError("the attack needs neighbours >= 0 (0: automatic), peaks >= 1, plane_rounds >= 0 "
                            f"and plane_neighbours >= 3, got {self.neighbours}, {self.peaks}, "
                            f"{self.plane_rounds}, {self.plane_neighbours}")
        if not 0 <= self.min_sine < 1 or self.window <= 0 or not 0 <= self.plane_min_cos < 1:
            raise VlocError(f"min_sine and plane_min_cos must be in [0, 1) and window > 0, got "
                            f"{self.min_sine}, {self.plane_min_cos}, {self.window}")

    def coarse_neighbours(self, lines: int) -> int:
        return self.neighbours or int(min(500, max(20, 0.05 * lines)))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AttackResult:
    points: np.ndarray        # (L, peaks, 3) estimated points, NaN where none
    support: np.ndarray       # (L, peaks) closest points in each peak's window (0 where none)

    @property
    def recovered(self) -> np.ndarray:
        """Lines with at least one estimate."""
        return np.isfinite(self.points[:, :, 0]).any(axis=1)


def _topk_rows(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    dp = np.take_along_axis(d, part, axis=1)
    o = np.argsort(dp, axis=1)
    return np.take_along_axis(part, o, axis=1), np.take_along_axis(dp, o, axis=1)


def _blocked_topk(n_rows: int, n_cols: int, k: int, block_fn, desc: str, progress: bool):
    """Row-blocked k smallest of an (n_rows, n_cols) matrix given by block_fn(s, e):
    (indices, values), -1 / inf where fewer than k finite entries."""
    idx = np.full((n_rows, k), -1, np.int64)
    val = np.full((n_rows, k), np.inf)
    k_eff = min(k, n_cols)
    if k_eff == 0:
        return idx, val
    rows = max(1, BLOCK_ENTRIES // max(n_cols, 1))
    bar = progress_bar(None, desc, progress, total=n_rows)
    for s in range(0, n_rows, rows):
        e = min(n_rows, s + rows)
        i, v = _topk_rows(block_fn(s, e), k_eff)
        idx[s:e, :k_eff], val[s:e, :k_eff] = i, v
        bar.update(e - s)
    bar.close()
    idx[~np.isfinite(val)] = -1
    return idx, val


def line_neighbours(anchors: np.ndarray, directions: np.ndarray, k: int, min_sine: float = 0.2,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(indices (L, k), line-to-line distances (L, k)) of each line's k nearest lines,
    nearest first; -1 / inf where there are fewer. distance = |v_i . m_j + m_i . v_j|
    / |v_i x v_j| with moments m = a x v; pairs within asin(min_sine) of parallel are left out."""
    v = np.asarray(directions, np.float64)
    a = np.asarray(anchors, np.float64)
    if len(a):
        a = a - np.median(a, axis=0)     # distances do not depend on the origin; float32 needs it near the lines
    m = np.cross(a, v)
    # ranked in float32 (the closest points are computed in float64 afterwards)
    P, Q = np.hstack([v, m]).astype(np.float32), np.hstack([m, v]).astype(np.float32)
    vf = v.astype(np.float32)
    lim = np.float32(max(min_sine * min_sine, 1e-6))

    def block(s, e):                 # squared distances, in place to spare memory traffic
        sin2 = vf[s:e] @ vf.T
        np.multiply(sin2, sin2, out=sin2)
        np.subtract(np.float32(1), sin2, out=sin2)
        d = P[s:e] @ Q.T
        np.multiply(d, d, out=d)
        np.putmask(sin2, sin2 < lim, np.float32(0))
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(d, sin2, out=d)
        np.putmask(d, ~(d < np.inf), np.float32(np.inf))     # parallel pairs (x / 0, 0 / 0)
        d[np.arange(e - s), np.arange(s, e)] = np.inf
        return d

    idx, d2 = _blocked_topk(len(a), len(a), k, block, "line neighbours", progress)
    return idx, np.sqrt(d2.astype(np.float64))


def closest_parameters(anchors: np.ndarray, directions: np.ndarray, nbr: np.ndarray,
                       min_sine: float = 0.0) -> np.ndarray:
    """(L, K): for line i and each neighbour j = nbr[i, k], the position along line i
    (from its anchor) of its point closest to line j; NaN for -1 and for lines within
    asin(min_sine) of parallel."""
    a = np.asarray(anchors, np.float64)
    v = np.asarray(directions, np.float64)
    j = np.maximum(nbr, 0)
    w = a[:, None, :] - a[j]                         # a_i - a_j
    b = np.einsum("id,ikd->ik", v, v[j])
    d = np.einsum("id,ikd->ik", v, w)
    e = np.einsum("ikd,ikd->ik", v[j], w)
    sin2 = 1.0 - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (b * e - d) / sin2
    s[(nbr < 0) | (sin2 < max(min_sine * min_sine, 1e-12))] = np.nan
    return s


def find_peaks(s: np.ndarray, peaks: int = 1, window: float = 0.25, min_support: int = 3,
               rounds: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of each row of s (L, K) (NaN: absent): the half-width h of the window is
    `window` x the row's median absolute deviation; the peak is the sample with most
    samples within +-h, moved to the mean of its window (`rounds` times). Further peaks
    leave out the samples within 2h of the earlier ones. Returns (positions (L, peaks),
    NaN where fewer than `min_support` samples agree; support (L, peaks): samples in
    the peak's window)."""
    s = np.asarray(s, np.float64)
    L, K = s.shape
    out = np.full((L, peaks), np.nan)
    support = np.zeros((L, peaks))
    valid = np.isfinite(s)
    if L == 0 or K == 0 or not valid.any():
        return out, support
    x = np.where(valid, s, np.nan)
    with np.errstate(all="ignore"), _quiet():
        med = np.nanmedian(x, axis=1)
        mad = np.nanmedian(np.abs(x - med[:, None]), axis=1)
        lo = np.nanmin(x, axis=1)
    med, lo = np.nan_to_num(med), np.nan_to_num(lo)
    h = window * np.where(np.isfinite(mad) & (mad > 0), mad, 0.0)
    h = np.maximum(h, 1e-12 * (1.0 + np.abs(med)))
    # all rows in one sorted 1-D array (row r shifted by r * span), so that one
    # searchsorted counts every window; samples out of play sit at the row's far end
    z = np.where(valid, s - lo[:, None], 0.0)
    span = float(z.max()) + 4.0 * float(h.max()) + 1.0
    off = np.arange(L, dtype=np.float64)[:, None] * span
    far = off + (span - 0.5)
    taken = ~valid
    zr = np.where(valid, z + off, far)
    for p in range(peaks):
        avail = np.where(taken, far, zr)
        flat = np.sort(avail, axis=1).ravel()
        first = np.searchsorted(flat, (avail - h[:, None]).ravel(), "left")
        last = np.searchsorted(flat, (avail + h[:, None]).ravel(), "right")
        count = (last - first).reshape(L, K)
        count[taken] = -1
        best = np.argmax(count, axis=1)
        c = zr[np.arange(L), best]
        for _ in range(rounds):                              # mean of the window, repeated
            w = ~taken & (np.abs(zr - c[:, None]) <= h[:, None])
            n = w.sum(1)
            c = np.where(n > 0, np.where(w, zr, 0.0).sum(1) / np.maximum(n, 1), c)
        n = (~taken & (np.abs(zr - c[:, None]) <= h[:, None])).sum(1)
        ok = (n >= min_support) & (count.max(axis=1) > 0)
        out[ok, p] = (c - off[:, 0] + lo)[ok]
        support[ok, p] = n[ok]
        taken = taken | (np.abs(zr - c[:, None]) <= 2 * h[:, None])
    return out, support


class _quiet:
    """Silence numpy's 'All-NaN slice' warnings (rows without samples are expected)."""

    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def plane_refine(points: np.ndarray, anchors: np.ndarray, directions: np.ndarray, k: int = 40,
                 rounds: int = 3, min_cos: float = 0.2, trim: float = 2.0, fits: int = 2) -> np.ndarray:
    """Move each estimate (row of `points`, on the line of the same row; NaN: none) to
    where its line crosses the plane fitted to the k nearest other estimates (PCA, then
    again without the points farther from the plane than `trim` x the median), when the
    line crosses it at more than asin(min_cos) and the move is at most twice the
    distance to the k-th neighbour; `rounds` times."""
    from scipy.spatial import cKDTree
    y = np.array(points, np.float64)
    a, v = np.asarray(anchors, np.float64), np.asarray(directions, np.float64)
    for _ in range(rounds):
        ids = np.nonzero(np.isfinite(y[:, 0]))[0]
        kk = min(k, len(ids) - 1)
        if kk < 3:
            break
        d, j = cKDTree(y[ids]).query(y[ids], kk + 1, workers=1)
        nb = y[ids[j[:, 1:]]]                                   # (n, k, 3), the estimate itself left out
        w = np.ones(nb.shape[:2])
        for _ in range(fits):
            c = (w[:, :, None] * nb).sum(1) / np.maximum(w.sum(1), 1e-12)[:, None]
            x = (nb - c[:, None, :]) * np.sqrt(w)[:, :, None]
            normal = np.linalg.eigh(np.einsum("nki,nkj->nij", x, x))[1][:, :, 0]
            r = np.abs(np.einsum("nkd,nd->nk", nb - c[:, None, :], normal))
            w = (r <= trim * np.maximum(np.median(r, axis=1, keepdims=True), 1e-15)).astype(np.float64)
        vn = np.einsum("nd,nd->n", v[ids], normal)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.einsum("nd,nd->n", c - a[ids], normal) / vn
        new = a[ids] + s[:, None] * v[ids]
        move = np.linalg.norm(new - y[ids], axis=1)
        good = (np.abs(vn) >= min_cos) & np.isfinite(s) & (move <= 2.0 * d[:, -1])
        y[ids[good]] = new[good]
    return y


def recover_points(anchors: np.ndarray, directions: np.ndarray, cfg: AttackConfig = AttackConfig(),
                   progress: bool = False) -> AttackResult:
    """The attack: estimates of the original point(s) on every line, NaN where the
    line's neighbours do not agree (for example in a cloud of a single line)."""
    a = np.asarray(anchors, np.float64).reshape(-1, 3)
    v = np.asarray(directions, np.float64).reshape(-1, 3)
    n = len(a)
    if n < 2:
        return AttackResult(np.full((n, cfg.peaks, 3), np.nan), np.zeros((n, cfg.peaks)))
    nbr, _ = line_neighbours(a, v, cfg.coarse_neighbours(n), cfg.min_sine, progress)
    s = closest_parameters(a, v, nbr, cfg.min_sine)
    pk, support = find_peaks(s, cfg.peaks, cfg.window, cfg.min_support)
    points = a[:, None, :] + pk[:, :, None] * v[:, None, :]
    if cfg.plane_rounds:
        flat = plane_refine(points.reshape(-1, 3), np.repeat(a, cfg.peaks, axis=0), np.repeat(v, cfg.peaks, axis=0),
                            cfg.plane_neighbours, cfg.plane_rounds, cfg.plane_min_cos)
        points = flat.reshape(n, cfg.peaks, 3)
    return AttackResult(points, support)


def extent(xyz: np.ndarray) -> float:
    """The size of a point cloud: the diagonal of its 5-95 % percentile box (robust to
    stray far points)."""
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    if len(xyz) < 2:
        return 0.0
    lo, hi = np.percentile(xyz, [5, 95], axis=0)
    return float(np.linalg.norm(hi - lo))


def point_errors(estimates: np.ndarray, truth: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Per original point on a line (truth entries >= 0, column by column): the distance
    to the nearest estimate on its line, inf where the line has none."""
    est = np.asarray(estimates, np.float64)
    if est.ndim == 2:
        est = est[:, None, :]
    errs = []
    for c in range(truth.shape[1]):
        rows = np.nonzero(truth[:, c] >= 0)[0]
        d = np.linalg.norm(est[rows] - np.asarray(xyz)[truth[rows, c]][:, None, :], axis=2)
        errs.append(np.min(np.where(np.isfinite(d), d, np.inf), axis=1, initial=np.inf))
    return np.concatenate(errs) if errs else np.zeros(0)


def recovery(result_points: np.ndarray, truth: np.ndarray, xyz: np.ndarray, relative: float = 0.01,
             metric: tuple[float, ...] = (), anchors: np.ndarray | None = None, scene_extent: float | None = None
             ) -> dict:
    """The attack's figures over the original points on the lines: `share_relative`
    (estimated within `relative` x the points' extent), `share_metric` ({threshold:
    share}, map units), `median_error` (inf when most have no estimate), `estimated`
    (share with an estimate); with `anchors`, the same for the stored anchors taken as
    guesses (`anchor_baseline`)."""
    ext = extent(xyz) if scene_extent is None else float(scene_extent)
    err = point_errors(result_points, truth, xyz)
    n = len(err)

    def figures(e):
        return {"share_relative": float(np.mean(e <= relative * ext)) if n else 0.0,
                "share_metric": {f"{t:g}": float(np.mean(e <= t)) if n else 0.0 for t in metric},
                "median_error": float(np.median(e)) if n else math.nan}

    out = {"points": n, "extent": ext, "relative_threshold": relative, "threshold": relative * ext,
           "estimated": float(np.mean(np.isfinite(err))) if n else 0.0, **figures(err)}
    if anchors is not None:
        out["anchor_baseline"] = figures(point_errors(np.asarray(anchors)[:, None, :], truth, xyz))
    return out
