"""Pooling of dense feature maps into one vector per image: GeM and NetVLAD-style
soft-assignment VLAD (no learned weights: the NetVLAD centroids come from k-means on
the map's own features), and PCA-whitening learned on the map's vectors.

Features are (N, D) float arrays, one row per cell of a dense map."""
from __future__ import annotations

import numpy as np

from ..errors import VlocError
from .global_descriptors import intra_normalize


def unit(v: np.ndarray) -> np.ndarray:
    """Rows (or the vector) to unit L2 norm; zero rows stay zero. float32."""
    v = np.asarray(v, np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0).astype(np.float32)


def gem(features: np.ndarray, p: float = 3.0, eps: float = 1e-6) -> np.ndarray:
    """(2 D,) signed generalised mean (Radenovic et al. 2018) of the rows: the GeM of
    the positive parts, then that of the negative parts (dense ALIKED features are
    L2-normalised SELU outputs, about half negative, so clamping to positives as
    plain GeM does would drop half of the signal). Not normalised.
    p = 1 is average pooling; large p tends to max pooling."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise VlocError(f"GeM needs (N, D) features with N >= 1, got shape {x.shape}")
    pos = np.mean(np.maximum(x, eps) ** p, axis=0) ** (1 / p)
    neg = np.mean(np.maximum(-x, eps) ** p, axis=0) ** (1 / p)
    return np.concatenate([pos, neg])


def soft_assign(features: np.ndarray, centroids: np.ndarray, alpha: float) -> np.ndarray:
    """(N, k) NetVLAD soft assignment: softmax over words of -alpha * ||x - c_k||^2."""
    x = np.asarray(features, np.float64)
    c = np.asarray(centroids, np.float64)
    logits = alpha * (2 * x @ c.T - np.einsum("ij,ij->i", c, c)[None])    # ||x||^2 cancels
    logits -= logits.max(axis=1, keepdims=True)
    a = np.exp(logits)
    return a / a.sum(axis=1, keepdims=True)


def assignment_sharpness(features: np.ndarray, centroids: np.ndarray, ratio: float = 100.0) -> float:
    """alpha such that a typical feature weighs its nearest word `ratio` times its
    second nearest (NetVLAD's initialisation: alpha = log(ratio) / mean gap of the
    squared distances to the two nearest words)."""
    x = np.asarray(features, np.float64)
    c = np.asarray(centroids, np.float64)
    if len(c) < 2:
        return 1.0
    d2 = (np.einsum("ij,ij->i", x, x)[:, None] - 2 * x @ c.T + np.einsum("ij,ij->i", c, c)[None])
    two = np.partition(d2, 1, axis=1)[:, :2]
    gap = float(np.mean(two[:, 1] - two[:, 0]))
    return float(np.log(ratio) / gap) if gap > 0 else 1.0


def netvlad(features: np.ndarray, centroids: np.ndarray, alpha: float) -> np.ndarray:
    """(k, D) soft-assigned residual sums: V_k = sum_i a_ik (x_i - c_k). Not normalised."""
    x = np.asarray(features, np.float64)
    a = soft_assign(x, centroids, alpha)
    return a.T @ x - a.sum(axis=0)[:, None] * np.asarray(centroids, np.float64)


def normalize_netvlad(blocks: np.ndarray) -> np.ndarray:
    """(k, D) -> flat vector: intra-normalisation, then global L2."""
    return unit(intra_normalize(blocks).ravel())


class Whitening:
    """PCA-whitening learned on (n, G) vectors: centre, project on the top `dim`
    principal directions and divide by sqrt(variance + shrink * largest variance)
    (the shrinkage keeps low-variance directions of a small map from being blown up),
    then L2. At most n - 1 directions exist."""

    def __init__(self, mean: np.ndarray, projection: np.ndarray):
        self.mean = np.ascontiguousarray(mean, np.float32)                 # (G,)
        self.projection = np.ascontiguousarray(projection, np.float32)     # (G, d); C order as when loaded

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int, shrink: float = 0.1) -> Whitening:
        v = np.asarray(vectors, np.float64)
        if v.ndim != 2 or len(v) < 3:
            raise VlocError(f"PCA-whitening needs at least 3 vectors, got shape {v.shape}")
        mean = v.mean(axis=0)
        _, s, vt = np.linalg.svd(v - mean, full_matrices=False)
        var = s ** 2 / (len(v) - 1)
        d = int(min(dim, len(v) - 1, int(np.sum(var > 1e-12 * var[0]))))
        if d < 1:
            raise VlocError("PCA-whitening: the map's vectors are all the same")
        scale = 1 / np.sqrt(var[:d] + shrink * var[0])
        return cls(mean, vt[:d].T * scale[None])

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return unit((np.asarray(vectors, np.float32) - self.mean) @ self.projection)
