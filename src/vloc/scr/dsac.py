"""DSAC (Brachmann et al. CVPR 2017) in torch: differentiable RANSAC over an image's
predicted scene coordinates, for end-to-end fine-tuning of the regressor.

- Hypotheses from minimal sets. With depth: 3-point Kabsch between the predicted
  scene coordinates and the camera points (rotation by SVD, differentiable). Without
  depth: P3P (PoseLib, not differentiable) on 3 points, the 4th choosing among its
  solutions, then Gauss-Newton steps on the 4 reprojection errors in torch, which make
  the hypothesis a differentiable function of the 4 predicted coordinates (at
  convergence the gradient of one Newton step is the implicit-function gradient).
  A DLT would be differentiable on its own but needs 6 points and is far less
  accurate on noisy coordinates; this keeps the 4-point sets of the RGB-D case.
- Soft inlier scores: sum over cells of sigmoid(softness * (1 - error / threshold)),
  the error in metres (3D, with depth) or pixels (reprojection).
- Each hypothesis is refit on its soft inliers (weighted Kabsch, or weighted
  Gauss-Newton steps), differentiably.
- Selection over the score softmax p = softmax(alpha * score / cells) (alpha scales
  the soft inlier *fraction*, so its peakiness does not depend on the image size; at
  alpha 100 on the benchmark room the largest probability averaged ~0.3): 'argmax'
  (the best-scored hypothesis; no gradient through the scores), 'soft-argmax' (the
  p-weighted average of the refined poses, rotation projected onto SO(3)),
  'probabilistic' (DSAC: the expected loss over p, exact over the hypotheses, with
  gradients through losses and probabilities).
- Pose loss: max(rotation error in degrees, centre error in cm), clamped.

The rotation of Kabsch is the special polar factor of the weighted cross-covariance;
its backward pass is the polar decomposition's derivative (denominators
s_i + s_j), not autograd through the SVD's factors (1 / (s_i^2 - s_j^2), infinite for
the isotropic triangles that 3-point sets often give)."""
from __future__ import annotations

import math
import time

import numpy as np
import poselib
import torch

from ..errors import VlocError
from ..progress import progress_bar
from .cnn import coordinate_loss, head_inputs
from .config import MIN_DSAC_CELLS as MIN_CELLS, DsacConfig, ScrConfig

BEHIND = 1e4          # pixels: the reprojection error of a point behind the camera
MIN_SUPPORT = 4.0     # soft inliers a hypothesis needs to be refit
# Gauss-Newton steps from P3P on a 4-point set: the gradient ignores the P3P start, so
# the steps must converge (on a test problem: finite differences matched to 1e-7 after
# 10 steps, to 4e-4 (relative) after 2 or 5: a set with an outlier converges slowly)
MINIMAL_GN_STEPS = 10


# Kabsch ------------------------------------------------------------------------------
class _Rotation(torch.autograd.Function):
    """The rotation nearest to M (..., 3, 3): argmax over SO(3) of <R, M>."""

    @staticmethod
    def forward(ctx, M):
        U, S, Vh = torch.linalg.svd(M)
        d = torch.sign(torch.linalg.det(U @ Vh))
        D = torch.stack([torch.ones_like(d), torch.ones_like(d), torch.where(d == 0, 1.0, d)], -1)
        R = U @ (D[..., None] * Vh)
        ctx.save_for_backward(R, Vh, S * D)
        return R

    @staticmethod
    def backward(ctx, G):
        # M = R P, P = W diag(lam) W^T: dR = R Omega, Omega_ij = A_ij / (lam_i + lam_j) in W's basis
        R, Vh, lam = ctx.saved_tensors
        W = Vh.mT
        C = W.mT @ R.mT @ G @ W
        den = lam[..., :, None] + lam[..., None, :]
        off = ~torch.eye(3, dtype=torch.bool)
        K = torch.where(off & (den.abs() > 1e-12), 1.0 / torch.where(den == 0, 1.0, den), 0.0)
        return R @ W @ (K * (C - C.mT)) @ W.mT


def nearest_rotation(M: torch.Tensor) -> torch.Tensor:
    return _Rotation.apply(M)


def kabsch(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """R, t minimising sum w |R src + t - dst|^2; batched (..., n, 3) -> (..., 3, 3), (..., 3)."""
    w = torch.ones(src.shape[:-1], dtype=src.dtype) if weights is None else weights
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    mu_s = (w[..., None] * src).sum(-2)
    mu_d = (w[..., None] * dst).sum(-2)
    M = ((w[..., None] * (dst - mu_d[..., None, :])).mT @ (src - mu_s[..., None, :]))
    R = nearest_rotation(M)
    return R, mu_d - (R @ mu_s[..., None])[..., 0]


# reprojection (colour only) ------------------------------------------------------------
def _skew(v: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(v[..., 0])
    return torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1),
                        torch.stack([v[..., 2], z, -v[..., 0]], -1),
                        torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def reprojection_errors(R, t, coords, rays, focal: float, min_depth: float = 1e-3) -> torch.Tensor:
    """(h, n) pixel errors of scene coordinates (n, 3) against the cells' normalised
    image coordinates (n, 2) under poses (h, 3, 3), (h, 3); BEHIND behind the camera."""
    xc = coords @ R.mT + t[:, None]
    z = xc[..., 2]
    err = focal * (xc[..., :2] / z.clamp_min(min_depth)[..., None] - rays).norm(dim=-1)
    return torch.where(z > min_depth, err, torch.full_like(err, BEHIND))


def gauss_newton(R, t, coords, rays, focal: float, weights=None, steps: int = 1, damping: float = 1e-4):
    """Weighted Gauss-Newton steps on the reprojection errors, differentiable: poses
    (h, 3, 3), (h, 3); coords (h, n, 3) or (n, 3); rays (.., n, 2); weights (h, n)."""
    for _ in range(steps):
        xc = coords @ R.mT + t[:, None]
        z = xc[..., 2]
        front = z > 1e-3
        zc = torch.where(front, z, torch.ones_like(z))
        u, v, iz = xc[..., 0] / zc, xc[..., 1] / zc, 1 / zc
        r = focal * (torch.stack([u, v], -1) - rays)                               # (h, n, 2)
        zero = torch.zeros_like(zc)
        # d(u, v) / d(rotation increment w, translation): x_cam -> x_cam + w x x_cam + dt
        J = focal * torch.stack([torch.stack([-u * v, 1 + u * u, -v, iz, zero, -u * iz], -1),
                                 torch.stack([-(1 + v * v), u * v, u, zero, iz, -v * iz], -1)], -2)
        w = front.to(R.dtype) if weights is None else weights * front
        J = J.flatten(-3, -2)                                                       # (h, 2n, 6)
        Jw = J * w.repeat_interleave(2, -1)[..., None]
        H = Jw.mT @ J
        scale = H.diagonal(dim1=-2, dim2=-1).mean(-1) + 1.0                     # damping relative to H
        H = H + (damping * scale)[..., None, None] * torch.eye(6, dtype=R.dtype)
        g = (Jw.mT @ r.flatten(-2)[..., None])[..., 0]
        delta = -torch.linalg.solve(H, g)
        dR = torch.linalg.matrix_exp(_skew(delta[..., :3]))
        R, t = dR @ R, (dR @ t[..., None])[..., 0] + delta[..., 3:]
    return R, t


def p3p_hypotheses(coords: np.ndarray, rays: np.ndarray, sets: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PoseLib's P3P on the first 3 cells of each set (m, 4), the solution with the
    smallest error on the 4th: rotations, translations and the sets kept (those
    without a solution are dropped)."""
    bearings = np.c_[rays, np.ones(len(rays))]
    bearings /= np.linalg.norm(bearings, axis=1, keepdims=True)
    Rs, ts, kept = [], [], []
    for i, s in enumerate(sets):
        best = None
        for pose in poselib.p3p(bearings[s[:3]], coords[s[:3]]):
            xc = pose.R @ coords[s[3]] + pose.t
            err = np.inf if xc[2] <= 0 else np.linalg.norm(xc[:2] / xc[2] - rays[s[3]])
            if best is None or err < best[0]:
                best = (err, pose.R, pose.t)
        if best is not None and np.isfinite(best[0]):
            Rs.append(best[1])
            ts.append(best[2])
            kept.append(i)
    return np.array(Rs).reshape(-1, 3, 3), np.array(ts).reshape(-1, 3), np.array(kept, dtype=np.int64)


# sampling ----------------------------------------------------------------------------
def sample_sets(points: np.ndarray, count: int, size: int, min_area: float, rng) -> np.ndarray:
    """(count, size) distinct cells whose first three `points` (camera points, or
    rays) span a triangle of area > min_area (no degenerate minimal set)."""
    n = len(points)
    out = np.zeros((0, size), np.int64)
    for _ in range(20):
        cand = np.stack([rng.choice(n, size, replace=False) for _ in range(2 * count)])
        p = points[cand[:, :3]]
        area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=-1)
        out = np.r_[out, cand[area > min_area]][:count]
        if len(out) == count:
            break
    return out


# the loss ----------------------------------------------------------------------------
def pose_loss(R, t, R_true, t_true, clamp: float) -> torch.Tensor:
    """max(rotation error in degrees, camera centre error x 100 (cm)), clamped."""
    chord = ((R - R_true) ** 2).sum((-1, -2)).add(1e-12).sqrt()
    rot = torch.rad2deg(2 * torch.asin((chord / (2 * math.sqrt(2))).clamp(max=1 - 1e-7)))
    centre = -(R.mT @ t[..., None])[..., 0]
    centre_true = -(R_true.mT @ t_true[..., None])[..., 0]
    trans = 100 * ((centre - centre_true) ** 2).sum(-1).add(1e-12).sqrt()
    return torch.maximum(rot, trans).clamp(max=clamp)


def hypotheses(coords, sets, cam=None, rays=None, focal: float = 1.0):
    """Minimal-set poses (h, 3, 3), (h, 3) and their errors on every cell (h, n)."""
    if cam is not None:
        R, t = kabsch(coords[sets], cam[sets])
        return R, t, ((coords @ R.mT + t[:, None]) - cam).norm(dim=-1)
    R0, t0, kept = p3p_hypotheses(coords.detach().double().numpy(), rays.double().numpy(), sets)
    R, t = gauss_newton(torch.as_tensor(R0, dtype=coords.dtype), torch.as_tensor(t0, dtype=coords.dtype),
                        coords[sets[kept]], rays[sets[kept]], focal, steps=MINIMAL_GN_STEPS)
    return R, t, reprojection_errors(R, t, coords, rays, focal)


def dsac_loss(coords: torch.Tensor, sets: np.ndarray, R_true: torch.Tensor, t_true: torch.Tensor,
              cfg: DsacConfig, cam: torch.Tensor | None = None, rays: torch.Tensor | None = None,
              focal: float = 1.0, selection: str | None = None) -> tuple[torch.Tensor, dict]:
    """The loss of one image: predicted scene coordinates (n, 3) with camera points
    (n, 3) from depth or normalised image coordinates (n, 2) (and the focal length in
    pixels), minimal sets (h, 3 or 4), the true cam_from_world. Returns the loss and
    facts (the selected hypothesis' loss, the expected loss, soft inlier counts)."""
    selection = selection or cfg.selection
    R, t, err = hypotheses(coords, sets, cam, rays, focal)
    if not len(R):
        return coords.sum() * 0, {"hypotheses": 0}
    threshold = cfg.threshold_3d if cam is not None else cfg.threshold_px
    soft = torch.sigmoid(cfg.softness * (1 - err / threshold))
    scores = soft.sum(-1)
    for _ in range(cfg.refine_steps):
        if cam is not None:
            R2, t2 = kabsch(coords.expand(len(R), -1, -1), cam.expand(len(R), -1, -1), soft)
        else:
            R2, t2 = gauss_newton(R, t, coords, rays, focal, soft)
        ok = soft.sum(-1) >= MIN_SUPPORT                  # a refit on almost no inliers is noise
        R, t = torch.where(ok[:, None, None], R2, R), torch.where(ok[:, None], t2, t)
        err = (((coords @ R.mT + t[:, None]) - cam).norm(dim=-1) if cam is not None
               else reprojection_errors(R, t, coords, rays, focal))
        soft = torch.sigmoid(cfg.softness * (1 - err / threshold))
    losses = pose_loss(R, t, R_true, t_true, cfg.loss_clamp)
    p = torch.softmax(cfg.alpha * scores / len(coords), 0)             # alpha x the soft inlier fraction
    best = int(scores.argmax())
    if selection == "argmax":
        loss = losses[best]
    elif selection == "probabilistic":
        loss = (p * losses).sum()
    else:                                                      # soft-argmax
        Rm = nearest_rotation((p[:, None, None] * R).sum(0))
        centre = -(p[:, None] * (R.mT @ t[..., None])[..., 0]).sum(0)
        loss = pose_loss(Rm, -(Rm @ centre), R_true, t_true, cfg.loss_clamp)
    with torch.no_grad():
        return loss, {"hypotheses": len(R), "selected_loss": float(losses[best]),
                      "expected_loss": float((p * losses).sum()), "best_score": float(scores[best]),
                      "max_probability": float(p.max())}


# fine-tuning -------------------------------------------------------------------------
def image_problem(head, buf, k: int, config: ScrConfig, rng, candidates: torch.Tensor | None = None):
    """Buffer image k as a DSAC problem: predicted coordinates (with gradients), the
    observations, minimal sets and the true pose (`candidates`: a prototype head's
    candidates per buffer row in place of its training ones)."""
    rows = buf.rows(k)
    frame = int(buf.frame[rows.start])
    if 0 < config.dsac.cells < rows.stop - rows.start:         # a random subset of the image's cells
        rows = torch.from_numpy(np.sort(rng.choice(np.arange(rows.start, rows.stop), config.dsac.cells,
                                                   replace=False)))
    P = buf.cam_from_world[frame]
    features, cand = head_inputs(head, buf, rows)
    coords = head(features, cand if candidates is None else candidates[rows])
    obs = {"focal": float(buf.focal[frame])}
    if buf.has_depth[frame] and config.dsac.minimal != "p3p":
        obs["cam"] = buf.targets[rows] @ P[:, :3].T + P[:, 3]
        sets = sample_sets(obs["cam"].numpy(), config.dsac.hypotheses, 3, config.dsac.threshold_3d ** 2, rng)
    else:
        obs["rays"] = buf.rays[rows]
        rays3 = np.c_[obs["rays"].numpy(), np.ones(len(obs["rays"]))]
        sets = sample_sets(rays3, config.dsac.hypotheses, 4, (config.dsac.threshold_px / obs["focal"]) ** 2, rng)
    return coords, sets, P[:, :3], P[:, 3], obs


def training_images(buf) -> np.ndarray:
    """The buffer images DSAC trains on: those of the augmented passes where there are
    any (the first pass's cells are the prototypes themselves: their loss is ~0 and
    its gradient noise), with enough cells for a minimal set."""
    first = len(buf.has_depth)
    images = np.arange(first if buf.images > first else 0, buf.images)
    return images[np.diff(buf.starts)[images] >= MIN_CELLS]


def query_like_candidates(head, buf, images: np.ndarray, config: ScrConfig) -> torch.Tensor | None:
    """A prototype head's candidates for the rows of `images` without the keys of their
    own mapping frame and the `dsac.exclude_frames` frames around it (as a query, which
    has no key of its own); None when not asked for or not a prototype head."""
    exclude = config.dsac.exclude_frames
    if exclude < 0 or getattr(head, "key_frames", None) is None or getattr(head, "candidates", None) is None:
        return None
    out = head.candidates.clone()
    rows = torch.cat([torch.arange(buf.rows(int(k)).start, buf.rows(int(k)).stop) for k in images])
    with torch.no_grad():                                  # search() works in chunks
        out[rows] = head.search(buf.features[rows], config.candidates, buf.frame[rows], exclude).to(out.dtype)
    return out


def training_objective(heads: list, buf, config: ScrConfig, seed: int = 7) -> list[float]:
    """What fine-tuning lowers, per head: the mean expected pose loss (max(cm, deg)) of
    the DSAC training images, under the same minimal sets (drawn with `seed`) for every
    head. Heads that share their keys (a head and its fine-tuned copy: DSAC keeps them)
    share one search for query-like candidates."""
    pool = training_images(buf)
    out, searched = [], {}
    for head in heads:
        keys = getattr(head, "keys", None)
        key = None if keys is None else (tuple(keys.shape), float(keys.detach().sum()))
        if key not in searched:
            searched[key] = query_like_candidates(head, buf, pool, config)
        rng, losses = np.random.default_rng(seed), []
        with torch.no_grad():
            for k in pool:
                coords, sets, R, t, obs = image_problem(head, buf, int(k), config, rng, searched[key])
                losses.append(dsac_loss(coords, sets, R, t, config.dsac, **obs)[1].get("expected_loss", np.nan))
        out.append(float(np.nanmean(losses)))
    return out


def fine_tune(head, buf, config: ScrConfig, selection: str | None = None, progress: bool = True) -> dict:
    """DSAC fine-tuning of a trained head on the buffer's images (`dsac.images` per
    step): the selection's pose loss, plus `coordinate_weight` x the coordinate loss
    (in cm) of `coordinate_batch` random buffer cells, an anchor for the values that
    no training image's pose needs. Adam by default: its step is ~lr for every value
    an image touches, however small its share of the pose; SGD with momentum 0.9 made
    the head worse. The keys of a prototype head stay: they decide which prototypes a
    cell uses, and DSAC's noisy per-image gradients on them destabilised training
    (measured on the small test room: its expected loss rose from 0.5 to 7.9 at lr
    1e-3, to 4.0 with the keys fixed).

    The defaults (no anchor, the temperature's own step `temperature_lr`, query-like
    candidates, 300 steps) let DSAC sharpen the prototype head's shared softmax
    temperature (0.0113 -> 0.007), which coordinate training does not: on three
    benchmark rooms RGB-D queries 0.87 / 1.06 / 0.98 cm against 0.99 / 1.47 / 1.02 cm for
    coordinate steps of the same CPU time; colour-only ones got worse (2.48 / 2.65 /
    2.61 against 2.03 / 2.36 / 2.04 cm). With the anchor the temperature did not move.
    The history below is of the former defaults (150 steps, anchor weight 1, the
    training candidates), where DSAC moved only per-prototype coordinates.

    On the benchmark room (benchmarks/scr.py: 320 x 240, 300 mapping frames, 50 RGB-D
    queries) DSAC did not lower the median error. With lr 1e-4: 1.08 cm after
    fine-tuning, 0.99 cm before, 1.01 cm for coordinate training of the same CPU time
    (per query: lower than the latter on 24 of 50); argmax, soft-argmax and
    probabilistic selection 1.08-1.09 cm. From a trained head that step raises DSAC's
    own objective (`training_objective`; 128 x 96 room: 0.20 -> 0.81 in 100 steps,
    0.08 at lr 1e-5), hence the default 1e-5: 1.00 -> 0.98 cm, against 0.96 cm for
    the same compute (25 : 25 queries). In development runs (150 steps x 4 images
    from a head at 0.86 cm): Adam at lr 1e-4 0.93 cm, 0.90 cm with the anchor; Adam at
    1e-3 2.15 cm (the training loss rose from 0.8 to 3.2); SGD at 3e-4 1.37 cm, at
    1e-3 4.55 cm. One gradient step on 16 or 64 training images lowered their loss
    (0.56 -> 0.43 at SGD lr 1e-3) but not that of other training images or of the
    queries: the gradient fits the images it came from. With query-like candidates
    (`dsac.exclude_frames` 1: no key of the image's own frame) colour-only queries
    went 2.60 -> 2.41 cm, still above the same compute of coordinate steps (1.87 cm).
    Mapping without depth (P3P hypotheses, query-like candidates): 150 steps at lr 1e-4
    took the head from 10.3 to 9.4 cm (10.3 cm at 1e-5) in 90 s of CPU, the same CPU time of coordinate steps to
    7.4 cm; 300 steps gave 10.3 cm (6.0 cm). `dsac.cells` 256 halves a step's cost;
    300 such steps gave 10.1 cm (7.2 cm; benchmarks/RESULTS.md has the details).
    Returns a history (per 5 % of the steps, means over the images: the expected
    loss, the loss of the best-scored hypothesis and the largest selection
    probability, whatever the selection trained on), wall and process CPU seconds."""
    cfg = config.dsac
    rng = np.random.default_rng([cfg.seed, 2])
    pool = training_images(buf)
    if not len(pool):
        raise VlocError(f"DSAC needs buffer images with >= {MIN_CELLS} cells; none has")
    n = min(cfg.images, len(pool))
    gen = torch.Generator().manual_seed(cfg.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    query_like = query_like_candidates(head, buf, pool, config)
    head.train()
    named = [(name, p) for name, p in head.named_parameters() if name != "keys"]
    groups = [{"params": [p for name, p in named if name != "log_scale"]}]
    scale = [p for name, p in named if name == "log_scale"]
    if scale:                                        # the shared temperature: its own step if asked
        groups.append({"params": scale, "lr": cfg.temperature_lr or cfg.lr})
    opt = (torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum) if cfg.optimizer == "sgd"
           else torch.optim.Adam(groups, lr=cfg.lr))
    every = max(1, cfg.steps // 20)
    history, running, skipped = [], [], 0
    bar = progress_bar(range(cfg.steps), f"DSAC fine-tuning ({selection or cfg.selection})", progress)
    for step in bar:
        total, peak, selected = 0.0, 0.0, 0.0
        opt.zero_grad()
        for k in rng.choice(pool, n, replace=False):
            coords, sets, R, t, obs = image_problem(head, buf, int(k), config, rng, query_like)
            loss, info = dsac_loss(coords, sets, R, t, cfg, selection=selection, **obs)
            if not torch.isfinite(loss):               # a degenerate image: skipped, counted
                skipped += 1
                continue
            (loss / n).backward()
            total += info.get("expected_loss", 0.0) / n
            peak += info.get("max_probability", 0.0) / n
            selected += info.get("selected_loss", 0.0) / n
        if cfg.coordinate_weight > 0:                  # the anchor: coordinate loss in cm on buffer rows
            rows = torch.randint(len(buf), (cfg.coordinate_batch,), generator=gen)
            anchor = coordinate_loss(head(*head_inputs(head, buf, rows)), rows, buf, config, head.scale)
            (cfg.coordinate_weight * 100 * head.scale.detach() * anchor).backward()
        opt.step()
        running.append((total, peak, selected))
        if (step + 1) % every == 0 or step + 1 == cfg.steps:
            mean = np.mean(running, axis=0)
            history.append({"step": step + 1, "expected_loss": float(mean[0]), "max_probability": float(mean[1]),
                            "selected_loss": float(mean[2]),
                            **({"temperature": math.exp(-float(scale[0].detach()))} if scale else {})})
            running = []
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]['expected_loss']:.2f}")
    head.eval()
    return {"dsac_loss": history, "skipped_images": skipped, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0}
