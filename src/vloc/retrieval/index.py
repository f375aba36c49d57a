"""Nearest images by global descriptor: an exact FAISS inner-product index over
unit vectors (inner product = cosine similarity). Queries are scored against the
index row by row by FAISS (top-k heaps); no n x n similarity matrix is built."""
from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

from ..errors import MapError, VlocError
from ..matching.nn import search

FORMAT_TAG = "vloc-retrieval-index"
FORMAT_VERSION = 1


class RetrievalIndex:
    """`vectors` (n, G) global descriptors of the database images named `names`.

    Vectors should be unit-L2 (as the encoders give) for scores to be cosines; zero
    vectors (images without features) are allowed and score 0 with everything."""

    def __init__(self, vectors: np.ndarray, names, pca_dim: int | None = None):
        v = np.asarray(vectors, dtype=np.float32)
        names = [str(n) for n in names]
        if v.ndim != 2 or v.shape[1] < 1:
            raise VlocError(f"retrieval index needs (n, G) vectors, got shape {v.shape}")
        if len(names) != len(v):
            raise VlocError(f"retrieval index: {len(v)} vectors but {len(names)} names")
        if len(set(names)) != len(names):
            raise VlocError("retrieval index: duplicate image names")
        if not np.all(np.isfinite(v)):
            raise VlocError("retrieval index: vectors contain NaN or infinite values")
        self.names: list[str] = names
        v = np.ascontiguousarray(v)
        if pca_dim and pca_dim < v.shape[1] and len(v) > 2 * pca_dim:
            # PCA (FAISS) then re-normalization, applied to queries too: a 10k-image
            # VLAD-8192 index searched in 88 ms flat takes a few ms at 256 dimensions
            pca = faiss.PCAMatrix(v.shape[1], int(pca_dim))
            # trained on <= 8 x pca_dim rows: fewer rows than dimensions lets FAISS work on
            # the rows' Gram matrix instead of a G x G covariance (8192^2 for VLAD-64)
            rows = np.random.default_rng(0).permutation(len(v))[: 8 * int(pca_dim)]
            pca.train(np.ascontiguousarray(v[np.sort(rows)]))
            chain = faiss.IndexPreTransform(faiss.IndexFlatIP(int(pca_dim)))
            chain.prepend_transform(faiss.NormalizationTransform(int(pca_dim), 2.0))
            chain.prepend_transform(pca)
            self.index = chain
        else:
            self.index = faiss.IndexFlatIP(v.shape[1])
        self.index.add(v)

    @classmethod
    def _from_faiss(cls, index, names: list[str]) -> RetrievalIndex:
        self = cls.__new__(cls)
        self.index, self.names = index, names
        return self

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, k') float32, indices (q, k') int64) of the k best database images
        of each query, best first, with k' = min(k, len(self)). A (G,) query is one row."""
        q = np.asarray(query, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise VlocError(f"retrieval query must be ({self.dim},) or (q, {self.dim}), got shape "
                            f"{np.shape(query)}")
        if not np.all(np.isfinite(q)):
            raise VlocError("retrieval query contains NaN or infinite values")
        k = int(k)
        if k < 1:
            raise VlocError(f"retrieval needs k >= 1, got {k}")
        k = min(k, len(self))
        if k == 0 or len(q) == 0:
            return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
        scores, idx = search(self.index, q, k)
        return scores, idx.astype(np.int64)

    def search_names(self, query: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per query, the (name, score) of the k best database images, best first."""
        scores, idx = self.search(query, k)
        return [[(self.names[j], float(s)) for s, j in zip(srow, irow)] for srow, irow in zip(scores, idx)]

    # persistence ---------------------------------------------------------
    @staticmethod
    def names_path(path) -> Path:
        path = Path(path)
        return path.with_name(path.name + ".json")

    def save(self, path) -> None:
        """FAISS's own binary format at `path` (no pickle) and the image names in
        `<path>.json`."""
        path = Path(path)
        meta = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "dim": self.dim,
                "count": len(self), "names": self.names}
        try:
            faiss.write_index(self.index, str(path))
            self.names_path(path).write_text(json.dumps(meta) + "\n")
        except (OSError, RuntimeError) as e:
            raise MapError(f"cannot write retrieval index {path}: {e}") from None

    @classmethod
    def load(cls, path) -> RetrievalIndex:
        path = Path(path)
        meta_path = cls.names_path(path)
        for p in (path, meta_path):
            if not p.is_file():
                raise MapError(f"retrieval index file not found: {p}")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise MapError(f"corrupt retrieval index names {meta_path}: {e}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_TAG:
            raise MapError(f"{meta_path} is not a vloc retrieval index")
        if meta.get("version") != FORMAT_VERSION:
            raise MapError(f"retrieval index {path} has format version {meta.get('version')}, "
                           f"this vloc reads version {FORMAT_VERSION}")
        names = meta.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise MapError(f"corrupt retrieval index names {meta_path}")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise MapError(f"cannot read retrieval index {path}: {str(e).strip().splitlines()[0]}") from None
        if not isinstance(index, (faiss.IndexFlatIP, faiss.IndexPreTransform)) or index.ntotal != len(names) \
                or index.d != meta.get("dim") or index.ntotal != meta.get("count"):
            raise MapError(f"retrieval index {path} does not match its names file {meta_path} "
                           f"({index.ntotal} vectors, {len(names)} names)")
        return cls._from_faiss(index, names)
