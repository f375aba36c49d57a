"""2D-3D matching: query descriptors against a map's point descriptors with a FAISS
index (exact for small maps, IVF beyond), Lowe's ratio test between distinct points."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from ..errors import MapError
from .nn import search

# descriptors; above this an IVF index is used. Measured on the shared scenes (core
# benchmark): IVF with nprobe 8 gives the same pose errors as exact search and
# matches 10-20x faster (fountain-P11, 23k descriptors: 0.02 s instead of 0.2-0.36 s).
FLAT_MAX = 8_000


def build_faiss_index(descriptors: np.ndarray, kind: str = "auto", seed: int = 0):
    """'flat' (exact L2), 'ivf' (IVF-Flat, nlist ~ 4 sqrt(M)) or 'auto' by size."""
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    m, d = x.shape
    if kind == "auto":
        kind = "flat" if m <= FLAT_MAX else "ivf"
    if kind == "flat":
        index = faiss.IndexFlatL2(d)
    elif kind == "ivf":
        nlist = int(max(8, min(4 * np.sqrt(m), m // 40)))    # >= 40 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        rng = np.random.default_rng(seed)
        train = x[rng.choice(m, size=min(m, 40 * nlist), replace=False)]
        index.cp.seed = seed
        index.train(train)
        index.nprobe = 16
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    index.add(x)
    return index


def save_index(index, path: Path) -> None:
    faiss.write_index(index, str(path))      # FAISS's own binary format (no pickle)


def load_index(path: Path):
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        raise MapError(f"cannot read descriptor index {path}: {e}") from None
    return index


def match_to_points(index, owner: np.ndarray, query_desc: np.ndarray, ratio: float = 0.8,
                    k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, point indices) of matches passing the ratio test, where the
    second neighbour is the nearest descriptor of a *different* point (several
    descriptors of one point never reject each other)."""
    q, owners, _ = match_to_owners(index, owner, query_desc, ratio, k)
    return q, owners


def match_to_owners(index, owner: np.ndarray, query_desc: np.ndarray, ratio: float = 0.8,
                    k: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`match_to_points` for any owner of the descriptors (points, lines), also
    returning each kept match's distance ratio (nearest / nearest other owner)."""
    if len(query_desc) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    dist, idx = search(index, query_desc, k)
    valid = idx >= 0
    pts = np.where(valid, owner[np.maximum(idx, 0)], -1)
    first = pts[:, 0]
    other = valid & (pts != first[:, None])
    other[:, 0] = False
    has_second = other.any(axis=1)
    j2 = np.argmax(other, axis=1)
    d2 = np.where(has_second, dist[np.arange(len(dist)), j2], np.inf)
    keep = valid[:, 0] & (dist[:, 0] < (ratio ** 2) * d2)
    q = np.nonzero(keep)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(np.maximum(dist[q, 0], 0) / d2[q])
    return q, first[q].astype(np.int64), np.nan_to_num(r, nan=0.0)
