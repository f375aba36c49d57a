"""Which mapping images to match with each other."""
from __future__ import annotations

import itertools

import numpy as np

from ..datasets import Frame
from ..errors import DataError


def exhaustive_pairs(frames: list[Frame]) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(len(frames)), 2))


def pairs_from_poses(frames: list[Frame], num: int = 20, max_angle_deg: float = 75.0) -> list[tuple[int, int]]:
    """For each image, its `num` nearest images (camera centres) among those whose
    viewing directions differ by less than `max_angle_deg` (as hloc's pairs_from_poses).
    A KD-tree gives the candidates, so this scales to 100k images (no N x N matrix)."""
    from scipy.spatial import cKDTree
    centers = np.array([f.cam_from_world.center for f in frames])
    dirs = np.array([f.cam_from_world.R[2] for f in frames])        # optical axes in world
    n = len(frames)
    min_cos = np.cos(np.radians(max_angle_deg))
    # candidates: the 16 x num nearest centres (all of them below 16 x num + 1 images,
    # which gives exactly the old dense-matrix result there)
    dist, idx = cKDTree(centers).query(centers, k=min(n, 16 * num + 1))
    pairs = set()
    for i in range(n):
        ok = (idx[i] != i) & np.isfinite(dist[i])
        cand = idx[i][ok]
        chosen = cand[dirs[cand] @ dirs[i] >= min_cos][:num]
        pairs.update((min(i, int(j)), max(i, int(j))) for j in chosen)
    return sorted(pairs)


def pairs_from_retrieval(descriptors: list[np.ndarray], num: int = 20) -> list[tuple[int, int]]:
    """For each image, its `num` most similar images by VLAD of its local descriptors
    with a vocabulary fitted on these images (hloc's pairs_from_retrieval, without a
    network). For images without poses, where pose-based pairs are impossible."""
    from ..retrieval import RetrievalIndex, make_global
    encoder = make_global("vlad")
    encoder.fit(descriptors)
    vectors = encoder.encode_many(descriptors)
    index = RetrievalIndex(vectors, [str(i) for i in range(len(vectors))], pca_dim=256)
    _, idx = index.search(vectors, num + 1)
    return sorted({(min(i, int(j)), max(i, int(j))) for i, row in enumerate(idx) for j in row if j != i})


EXHAUSTIVE_MAX = 40     # images; 780 pairs. More pairs gave more complete tracks and lower errors
                        # on nerf_fox (10 / 20 / 30 / all neighbours: 0.078 / 0.058 / 0.050 / 0.047 % of scale)


def select_pairs(frames: list[Frame], strategy: str, num: int, max_angle_deg: float,
                 descriptors: dict[str, np.ndarray] | None = None) -> list[tuple[int, int]]:
    """`auto`: exhaustive up to EXHAUSTIVE_MAX images, else the `num` nearest by pose,
    or by retrieval (needs each frame's local `descriptors`) where a frame has no pose."""
    has_poses = all(f.has_pose for f in frames)
    small = len(frames) <= max(EXHAUSTIVE_MAX, num + 1)
    if strategy == "auto":
        strategy = "exhaustive" if small else "poses" if has_poses else "retrieval"
    if strategy == "exhaustive":
        return exhaustive_pairs(frames)
    if strategy == "retrieval":
        if descriptors is None:
            raise DataError("pairs=retrieval needs the images' local features")
        return pairs_from_retrieval([descriptors[f.name] for f in frames], num)
    if not has_poses:
        raise DataError("pairs=poses needs a pose for every mapping frame; use pairs = \"retrieval\"")
    return pairs_from_poses(frames, num, max_angle_deg)
