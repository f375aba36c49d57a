"""The retrieval index's search: threads chosen by the work in the searched space."""
import faiss
import numpy as np

from vloc.matching.nn import SINGLE_THREAD_MAX_WORK, scanned_per_query, searched_dim
from vloc.retrieval import RetrievalIndex


def test_a_pca_index_counts_its_work_in_the_reduced_dimension():
    """A 1-query search of a PCA-reduced flat index is counted in the reduced
    dimension (counted at the input's, a 100k-image search ran on 2 threads, 4x slower)."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(600, 1024)).astype(np.float32)
    index = RetrievalIndex(v / np.linalg.norm(v, axis=1, keepdims=True), [str(i) for i in range(600)], pca_dim=64)
    assert index.index.d == 1024 and searched_dim(index.index) == 64
    assert searched_dim(faiss.IndexFlatIP(32)) == 32
    assert scanned_per_query(index.index) * searched_dim(index.index) < SINGLE_THREAD_MAX_WORK
    scores, idx = index.search(v[3] / np.linalg.norm(v[3]), 2)
    assert idx[0, 0] == 3 and scores[0, 0] > 0.99
