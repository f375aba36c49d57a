"""Visual vocabularies: FAISS k-means on local descriptors, trained on a map's own
images (no pretrained retrieval model is available offline)."""
from __future__ import annotations

import faiss
import numpy as np

from ..errors import VlocError
from ..matching.nn import search


def train_vocabulary(descriptors: np.ndarray, k: int, seed: int = 0, max_train: int = 200_000,
                     niter: int = 20, spherical: bool = False) -> np.ndarray:
    """(k, D) float32 centroids of `descriptors` (M, D) by k-means (FAISS), seeded by
    k-means++ (FAISS's own random initialisation often puts two centroids in one
    cluster and never recovers).

    At most `max_train` descriptors are used, a subsample drawn with `seed` (the same
    inputs and seed give the same vocabulary). `spherical=True` renormalises the
    centroids to unit L2 norm after each iteration (for unit descriptors: SIFT)."""
    x = np.asarray(descriptors)
    if x.ndim != 2 or x.shape[1] < 1:
        raise VlocError(f"vocabulary training needs (M, D) descriptors, got shape {x.shape}")
    k, max_train = int(k), int(max_train)
    if k < 1:
        raise VlocError(f"a vocabulary needs k >= 1 words, got {k}")
    m, d = x.shape
    if m < k:
        raise VlocError(f"cannot train a vocabulary of {k} words on {m} descriptors "
                        f"(need at least {k}; use fewer words or more images)")
    if not np.all(np.isfinite(x)):
        raise VlocError("vocabulary training descriptors contain NaN or infinite values")
    if m > max(max_train, k):
        rng = np.random.default_rng(seed)
        x = x[np.sort(rng.choice(m, size=max(max_train, k), replace=False))]
    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(d, k, niter=int(niter), seed=int(seed), spherical=bool(spherical),
                      verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=len(x) // k + 1)   # we subsample, not FAISS
    init = kmeans_pp(x, k, np.random.default_rng(seed))
    if spherical:
        init /= np.maximum(np.linalg.norm(init, axis=1, keepdims=True), 1e-12)
    km.train(x, init_centroids=init)
    return np.ascontiguousarray(km.centroids, dtype=np.float32).reshape(k, d)


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator, max_points: int = 8) -> np.ndarray:
    """(k, D) float32 greedy k-means++ seeds (D^2 sampling, Arthur & Vassilvitskii 2007;
    at each step the best of 2 + log(k) sampled candidates, as scikit-learn) drawn
    from at most `max_points * k` of the rows of `x`."""
    if len(x) > max_points * k:
        x = x[np.sort(rng.choice(len(x), size=max_points * k, replace=False))]
    x = np.ascontiguousarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    trials = 2 + int(np.log(k))
    centres = np.empty(k, np.int64)
    centres[0] = rng.integers(len(x))
    d2 = np.maximum(sq - 2 * (x @ x[centres[0]]) + sq[centres[0]], 0)
    for j in range(1, k):
        total = float(d2.sum(dtype=np.float64))
        if total > 0:
            cand = np.searchsorted(np.cumsum(d2, dtype=np.float64), rng.random(trials) * total, side="right")
            cand = np.minimum(cand, len(x) - 1)
        else:                       # fewer distinct points than k: FAISS splits the duplicates
            cand = rng.integers(len(x), size=1)
        dc = np.maximum(sq[:, None] - 2 * (x @ x[cand].T) + sq[cand][None], 0)   # (n, trials)
        dc = np.minimum(dc, d2[:, None])
        best = int(np.argmin(dc.sum(0, dtype=np.float64)))
        centres[j], d2 = cand[best], dc[:, best]
    return np.ascontiguousarray(x[centres])


def assign(centroids: np.ndarray, descriptors: np.ndarray, index=None) -> np.ndarray:
    """(N,) int64 index of the nearest centroid (L2) of each descriptor."""
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    if len(x) == 0:
        return np.zeros(0, np.int64)
    if index is None:
        index = flat_index(centroids)
    _, idx = search(index, x, 1)
    return idx[:, 0].astype(np.int64)


def flat_index(centroids: np.ndarray):
    """Exact L2 FAISS index over the centroids (nearest-word assignment)."""
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(c)
    return index
