"""Base-pose analysis of absolute pose regression (Sattler et al., CVPR 2019,
"Understanding the limitations of CNN-based absolute camera pose regression").

A pose regressor's last layer computes  out = b + W f  with f >= 0 (after a ReLU), so
every prediction is the bias plus a non-negative combination of the columns of W: the
"base poses". With vloc's normalisation (world position = mean + scale * out[:3]) the
base pose of feature j, drawn at a typical activation a_j, is

    position_j   = mean + scale * (b[:3] + a_j W[:3, j])
    quaternion_j = normalised(b[3:] + a_j W[3:, j])        (cam_from_world, w x y z)

a_j is a high percentile (default 95) of feature j over the training images: what
the feature contributes when it fires. Predictions lie near the training positions
only as far as the base poses combine to them; Sattler et al. show that this makes
pose regression behave like image retrieval (interpolating training poses), not like
3D structure-based localization.

`base_poses` and the statistics are numpy only; `plot_base_poses` draws a top view
(matplotlib, Agg); `analyze_regression_map` runs a regression map's network over a
scene's split and does both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VlocError
from ..geometry.pose import quat_to_rotmat

__all__ = ["BasePoses", "analyze_regression_map", "base_poses", "ground_axes",
           "linear_positions", "nearest_training", "plot_base_poses"]


@dataclass
class BasePoses:
    """One base pose per feature (F of them) of a pose regressor's last layer."""

    positions: np.ndarray       # (F, 3) world positions at the typical activation
    quaternions: np.ndarray     # (F, 4) unit cam_from_world quaternions (w x y z); 0 if undefined
    activations: np.ndarray     # (F,) typical activation a_j (percentile over the training set)
    share: np.ndarray           # (F,) feature's share of the position offsets W[:3] f (sums to 1)
    active: np.ndarray          # (F,) fraction of training images on which the feature is > 0
    bias_position: np.ndarray   # (3,) mean + scale * b[:3]: the prediction for f = 0

    def strongest(self, k: int) -> np.ndarray:
        """Indices of the k features with the largest share, largest first."""
        return np.argsort(-self.share, kind="stable")[:k]

    def features_for(self, fraction: float = 0.9) -> int:
        """How many features (largest share first) carry `fraction` of the position offsets."""
        cum = np.cumsum(np.sort(self.share)[::-1])
        return int(np.searchsorted(cum, fraction - 1e-12) + 1) if cum.size else 0


def base_poses(head_weight, head_bias, features, position_mean, position_scale,
               percentile: float = 95.0) -> BasePoses:
    """Base poses of a last layer `out = head_bias + head_weight @ f` (weight (7, F),
    bias (7,)) from the features (N, F) of the training images (non-negative).
    The share of feature j is sum_i |f_ij| ||W[:3, j]|| over all i, normalised over j:
    how much of the predicted position offsets it accounts for on the training set."""
    W = np.asarray(head_weight, np.float64)
    b = np.asarray(head_bias, np.float64)
    f = np.asarray(features, np.float64)
    if W.ndim != 2 or W.shape[0] != 7 or b.shape != (7,):
        raise VlocError(f"a pose head is (7, F) + (7,), got {W.shape} + {b.shape}")
    if f.ndim != 2 or f.shape[1] != W.shape[1] or len(f) == 0:
        raise VlocError(f"features must be (N, {W.shape[1]}) with N >= 1, got {f.shape}")
    if (f < 0).any():
        raise VlocError("features must be non-negative (taken after the ReLU)")
    mean = np.asarray(position_mean, np.float64).reshape(3)
    scale = float(np.asarray(position_scale, np.float64))
    a = np.percentile(f, percentile, axis=0)
    positions = mean + scale * (b[:3] + (W[:3] * a).T)
    quaternions = _normalised(b[3:] + (W[3:] * a).T)
    contribution = f.sum(axis=0) * np.linalg.norm(W[:3], axis=0)
    total = contribution.sum()
    share = contribution / total if total > 0 else np.zeros_like(contribution)
    return BasePoses(positions, quaternions, a, share, (f > 0).mean(axis=0), mean + scale * b[:3])


def linear_positions(head_weight, head_bias, features, position_mean, position_scale) -> np.ndarray:
    """World positions (N, 3) that the last layer predicts from features (N, F)."""
    W, b, f = (np.asarray(x, np.float64) for x in (head_weight, head_bias, features))
    return np.asarray(position_mean, np.float64).reshape(3) + float(position_scale) * (f @ W[:3].T + b[:3])


def _normalised(q: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(q, axis=1, keepdims=True)
    return np.divide(q, n, out=np.zeros_like(q), where=n > 1e-12)


def ground_axes(positions) -> tuple[int, int]:
    """The two axes along which the positions spread most (the ground plane of a
    top view), in increasing axis order."""
    spread = np.asarray(positions, np.float64).std(axis=0)
    i, j = sorted(np.argsort(-spread, kind="stable")[:2].tolist())
    return i, j


def nearest_training(train_positions, test_positions) -> np.ndarray:
    """Index of the nearest training position for each test position."""
    from scipy.spatial import cKDTree
    return cKDTree(np.asarray(train_positions, np.float64)).query(np.asarray(test_positions, np.float64))[1]


def viewing_directions(quaternions) -> np.ndarray:
    """World direction of each camera's optical axis (zero for an undefined quaternion)."""
    out = np.zeros((len(quaternions), 3))
    for k, q in enumerate(np.asarray(quaternions, np.float64)):
        if np.linalg.norm(q) > 0:
            out[k] = quat_to_rotmat(q)[2]        # third row of R: the camera's z axis in the world
    return out


def plot_base_poses(path, train_positions, test_positions, predicted_positions, base: BasePoses,
                    nearest_train_positions=None, max_base: int = 64, title: str = "") -> Path:
    """Top view PNG: training and test ground-truth positions, the predictions (lines
    to their truth), the nearest training image of each test query and the `max_base`
    base poses with the largest share (marker area by share, arrow: viewing direction)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    train = np.asarray(train_positions, np.float64)
    test = np.asarray(test_positions, np.float64)
    pred = np.asarray(predicted_positions, np.float64)
    i, j = ground_axes(train)
    names = "xyz"
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ax.plot(train[:, i], train[:, j], ".", ms=2, color="0.6", label=f"training ({len(train)})")
    for t, p in zip(test, pred):
        ax.plot([t[i], p[i]], [t[j], p[j]], "-", lw=0.7, color="tab:red", alpha=0.6)
    ax.plot(test[:, i], test[:, j], "o", ms=4, color="tab:green", label=f"test truth ({len(test)})")
    ax.plot(pred[:, i], pred[:, j], "x", ms=5, color="tab:red", label="predicted")
    if nearest_train_positions is not None:
        near = np.asarray(nearest_train_positions, np.float64)
        ax.plot(near[:, i], near[:, j], "s", ms=4, mfc="none", color="tab:blue",
                label="nearest training image")
    top = base.strongest(max_base)
    bp = base.positions[top]
    area = 400 * base.share[top] / max(base.share[top].max(), 1e-12) + 4
    ax.scatter(bp[:, i], bp[:, j], s=area, color="tab:orange", alpha=0.6, edgecolors="k",
               linewidths=0.3, label=f"base poses (top {len(top)} by share)")
    d = viewing_directions(base.quaternions[top])
    span = np.ptp(train[:, [i, j]], axis=0).max() or 1.0
    ax.quiver(bp[:, i], bp[:, j], d[:, i], d[:, j], color="tab:orange", angles="xy",
              scale_units="xy", scale=1.0 / (0.04 * span), width=0.003)
    ax.plot(*base.bias_position[[i, j]], "*", ms=12, color="k", label="bias (f = 0)")
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title or f"base poses: {base.features_for(0.9)} of {len(base.share)} features "
                 f"carry 90 % of the position offsets", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analyze_regression_map(map_dir, scene, split: str, out_png, percentile: float = 95.0,
                           batch: int = 32) -> dict:
    """Run the network of a pose regression map (`posenet` / `mapnet`) over the first
    fold of `split` of `scene` (mapping frames = training set, query frames = test),
    extract its base poses, write the top view to `out_png` and return statistics
    (metres in scene units): median error of the predictions, median distance of the
    test truth to its nearest training position (what retrieval could reach) and of
    the predictions to theirs."""
    try:
        from ..localizers.regression import RegressionLocalizer
    except ImportError as e:
        raise VlocError(f"pose regression is not available in this vloc "
                        f"(vloc.localizers.regression: {e})") from None
    loc = RegressionLocalizer.load(map_dir)
    fold = scene.split(split)[0]
    train_frames = [f for f in fold.mapping if f.has_pose]
    test_frames = [f for f in fold.query if f.has_pose]
    if not train_frames or not test_frames:
        raise VlocError(f"split {split!r} of {scene.name} needs posed mapping and query frames")
    model = loc.model.eval()
    head = model.head
    W = head.weight.detach().cpu().numpy()
    b = head.bias.detach().cpu().numpy()
    mean = model.position_mean.detach().cpu().numpy()
    scale = float(model.position_scale.detach().cpu())
    train_f = _features(loc, train_frames, batch)
    test_f = _features(loc, test_frames, batch)
    base = base_poses(W, b, train_f, mean, scale, percentile)
    train = np.array([f.cam_from_world.center for f in train_frames])
    test = np.array([f.cam_from_world.center for f in test_frames])
    pred = linear_positions(W, b, test_f, mean, scale)
    near = train[nearest_training(train, test)]
    plot_base_poses(out_png, train, test, pred, base, near,
                    title=f"{scene.name} ({split}): {base.features_for(0.9)} of {len(base.share)} "
                          f"features carry 90 % of the position offsets")
    return {"png": str(out_png), "features": len(base.share),
            "features_for_90_percent": base.features_for(0.9),
            "features_never_active": int((base.active == 0).sum()),
            "median_prediction_error": float(np.median(np.linalg.norm(pred - test, axis=1))),
            "median_truth_to_nearest_training": float(np.median(np.linalg.norm(near - test, axis=1))),
            "median_prediction_to_nearest_training":
                float(np.median(np.linalg.norm(pred - train[nearest_training(train, pred)], axis=1)))}


def _features(loc, frames, batch: int) -> np.ndarray:
    """The head's input for every frame's image, through the localizer's preprocessing."""
    import torch
    from ..imageio import read_image
    size = max(loc.input_size) if getattr(loc, "input_size", None) else None   # as the localizer reads
    out = []
    with torch.no_grad():
        for k in range(0, len(frames), batch):
            images = [read_image(f.image_path, max_size=size)[0] for f in frames[k:k + batch]]
            x = torch.cat([loc.preprocess(img) for img in images])
            out.append(loc.model.features(x).detach().cpu().numpy())
    return np.concatenate(out).astype(np.float64)
