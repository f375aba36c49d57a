"""Nearest-neighbour matching of unit-norm descriptors: mutual check and Lowe's
ratio test. FAISS's blocked exact search is several times faster here than a dense
similarity matrix with numpy or torch (measured: 0.13 s vs 0.8-4 s for 8k x 8k)."""
from __future__ import annotations

import faiss
import numpy as np


# below this many query x database pairs one thread is faster: OpenMP's start-up costs
# more than the work (measured on 700 x 700 SIFT-sized problems, loaded 2-core
# machine: 11 ms on 1 thread, 24 ms on 2)
SINGLE_THREAD_MAX = 4_000_000


def knn(query: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours: (squared L2 distances, indices), each (N, k)."""
    index = faiss.IndexFlatL2(database.shape[1])
    index.add(np.ascontiguousarray(database, dtype=np.float32))
    q = np.ascontiguousarray(query, dtype=np.float32)
    if len(q) * len(database) > SINGLE_THREAD_MAX:
        return index.search(q, k)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(q, k)
    finally:
        faiss.omp_set_num_threads(threads)


def match_mutual_ratio(desc0: np.ndarray, desc1: np.ndarray, ratio: float = 0.8,
                       mutual: bool = True) -> np.ndarray:
    """Matches (K, 2) of row indices: nearest neighbours passing the ratio test
    (distance to the nearest < ratio x distance to the second) and, if `mutual`,
    the mutual check."""
    if len(desc0) == 0 or len(desc1) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    k = min(2, len(desc1))
    d, i = knn(desc0, desc1, k)
    second = d[:, 1] if k == 2 else np.full(len(desc0), np.inf, np.float32)
    keep = d[:, 0] < (ratio ** 2) * second
    idx0 = np.nonzero(keep)[0]
    if mutual and len(idx0):
        # backward nearest neighbours only for the candidates' targets (cheaper than all)
        targets, inv = np.unique(i[idx0, 0], return_inverse=True)
        _, back = knn(desc1[targets], desc0, 1)
        idx0 = idx0[back[inv, 0] == idx0]
    return np.stack([idx0, i[idx0, 0]], axis=1).astype(np.int64)
