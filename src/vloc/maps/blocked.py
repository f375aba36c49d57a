"""Known-pose maps too large to triangulate at once. At 100k images pycolmap's
triangulator alone grew past 12 GB, beside 11.6 GB of features held for matching.
Here the features go to the map's feature store on disk, the cameras are split into
spatial blocks (k-d splits at the median of the widest axis), and each block reads
its images' features, matches its pairs and triangulates them with pycolmap; memory
is bounded by a block. A pair belongs to the block of its first image; its partner
joins that block as a halo image, so tracks cross the borders.

A point seen from both sides of a border is triangulated by both blocks, which share
an observation of it (an image's keypoint). Such points are merged here (COLMAP
merges tracks within one reconstruction only): coordinates averaged, weighted by track
length, if the merged point reprojects within `MERGE_MAX_ERROR` into every observation;
otherwise only the longest of them is kept."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._libs import pycolmap
from ..datasets import Frame
from ..errors import MapError
from ..features.store import FeatureReader
from ..progress import progress_bar
from .config import MapConfig
from .points import MapPoints

MERGE_MAX_ERROR = 4.0          # px (original image), as COLMAP's merge_max_reproj_error


def split_blocks(centers: np.ndarray, max_images: int) -> list[np.ndarray]:
    """Indices of the cameras in each block (sorted; blocks ordered by first index):
    halve at the median of the widest axis until a block has at most `max_images`."""
    blocks, todo = [], [np.arange(len(centers))]
    while todo:
        idx = todo.pop()
        if len(idx) <= max_images:
            blocks.append(np.sort(idx))
            continue
        c = centers[idx]
        axis = int(np.argmax(c.max(axis=0) - c.min(axis=0)))
        order = idx[np.argsort(c[:, axis], kind="stable")]
        todo += [order[len(order) // 2:], order[:len(order) // 2]]
    return sorted(blocks, key=lambda b: int(b[0]))


@dataclass
class Observations:
    """3D points and their observations, in flat arrays (obs_* of equal length)."""
    xyz: np.ndarray            # (P, 3)
    obs_point: np.ndarray      # (O,) row in xyz
    obs_image: np.ndarray      # (O,) index of the frame
    obs_kp: np.ndarray         # (O,) keypoint index in that frame

    @classmethod
    def concat(cls, parts: list[Observations]) -> Observations:
        offsets = np.cumsum([0] + [len(p.xyz) for p in parts])
        return cls(np.concatenate([p.xyz for p in parts]).reshape(-1, 3),
                   np.concatenate([p.obs_point + o for p, o in zip(parts, offsets)]),
                   np.concatenate([p.obs_image for p in parts]), np.concatenate([p.obs_kp for p in parts]))

    @property
    def keys(self) -> np.ndarray:
        return self.obs_image.astype(np.int64) << 32 | self.obs_kp.astype(np.int64)


def observations_from_reconstruction(rec, members: np.ndarray) -> Observations:
    """A block's points (sorted by id); image id k of the block is frame members[k-1]."""
    xyz, op, oi, ok = [], [], [], []
    for row, (_, pt) in enumerate(sorted(rec.points3D.items())):
        xyz.append(pt.xyz)
        for e in pt.track.elements:
            op.append(row)
            oi.append(e.image_id)
            ok.append(e.point2D_idx)
    return Observations(np.asarray(xyz, np.float64).reshape(-1, 3), np.asarray(op, np.int64),
                        members[np.asarray(oi, np.int64) - 1] if oi else np.zeros(0, np.int64),
                        np.asarray(ok, np.int64))


def merge_shared_points(obs: Observations, frames: list[Frame], keypoints,
                        max_error: float = MERGE_MAX_ERROR) -> tuple[Observations, dict]:
    """Points that share an observation become one (see the module doc). `keypoints(i)`
    gives frame i's keypoints. Returns the points, each observation once, and counts."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    P = len(obs.xyz)
    order = np.argsort(obs.keys, kind="stable")
    k, p = obs.keys[order], obs.obs_point[order]
    same = k[1:] == k[:-1]
    graph = coo_matrix((np.ones(int(same.sum())), (p[:-1][same], p[1:][same])), shape=(P, P))
    _, label = connected_components(graph, directed=False)
    length = np.bincount(obs.obs_point, minlength=P)
    size = np.bincount(label)
    keep = np.ones(P, bool)                  # points whose group survives (members of merged groups too)
    xyz = obs.xyz.copy()
    merged = conflicts = 0
    by_point = np.argsort(obs.obs_point, kind="stable")
    start = np.concatenate([[0], np.cumsum(length)])
    by_label = np.argsort(label, kind="stable")
    label_start = np.concatenate([[0], np.cumsum(size)])
    for g in np.nonzero(size > 1)[0]:
        members = by_label[label_start[g]:label_start[g + 1]]
        w = length[members].astype(np.float64)
        X = (obs.xyz[members] * w[:, None]).sum(axis=0) / w.sum()
        rows = np.concatenate([by_point[start[m]:start[m + 1]] for m in members])
        if _max_reprojection_error(X, obs.obs_image[rows], obs.obs_kp[rows], frames, keypoints) <= max_error:
            xyz[members] = X
            merged += 1
        else:                                # keep the longest track alone
            label[members] = -1 - members
            best = members[np.argmax(length[members])]
            keep[members] = False
            keep[best] = True
            label[best] = g
            conflicts += 1
    # renumber: one point per surviving group, in order of its first member
    valid = keep[obs.obs_point]
    groups = label[obs.obs_point[valid]]
    uniq, first = np.unique(label[keep], return_index=True)
    new_of_group = np.empty(len(uniq), np.int64)
    new_of_group[np.argsort(np.nonzero(keep)[0][first])] = np.arange(len(uniq))
    new_point = new_of_group[np.searchsorted(uniq, groups)]
    rows = np.nonzero(keep)[0][first]
    out_xyz = np.empty((len(uniq), 3))
    out_xyz[new_of_group] = xyz[rows]
    table = np.unique(np.stack([new_point, obs.obs_image[valid], obs.obs_kp[valid]], axis=1), axis=0)
    out = Observations(out_xyz, table[:, 0], table[:, 1], table[:, 2])
    return out, {"points_merged": int(merged), "merge_conflicts": int(conflicts)}


def _max_reprojection_error(X, images, kps, frames, keypoints) -> float:
    err = 0.0
    for i, kp in zip(images, kps):
        f = frames[int(i)]
        x = f.camera.project((f.cam_from_world.R @ X + f.cam_from_world.t)[None])[0]
        err = max(err, float(np.linalg.norm(x - keypoints(int(i))[int(kp)])))
    return err


def map_points(obs: Observations, frames: list[Frame], reader: FeatureReader, mode: str) -> MapPoints:
    """MapPoints (as points_from_reconstruction) with each image's descriptors read once."""
    P = len(obs.xyz)
    order = np.lexsort((obs.obs_kp, obs.obs_image, obs.obs_point))       # by point
    obs = Observations(obs.xyz, obs.obs_point[order], obs.obs_image[order], obs.obs_kp[order])
    dim = reader.descriptors(frames[int(obs.obs_image[0])].name).shape[1]
    desc = np.empty((len(obs.obs_point), dim), np.float16)
    by_image = np.argsort(obs.obs_image, kind="stable")
    cuts = np.nonzero(np.diff(obs.obs_image[by_image]))[0] + 1
    for rows in np.split(by_image, cuts):
        d = reader.descriptors(frames[int(obs.obs_image[rows[0]])].name)
        desc[rows] = d[obs.obs_kp[rows]]
    length = np.bincount(obs.obs_point, minlength=P).astype(np.int32)
    ids = np.arange(1, P + 1, dtype=np.int64)
    if mode == "mean":
        starts = np.concatenate([[0], np.cumsum(length)[:-1]])
        mean = np.add.reduceat(desc.astype(np.float32), starts, axis=0)
        mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return MapPoints(obs.xyz, ids, length, mean, np.arange(P, dtype=np.int32))
    return MapPoints(obs.xyz, ids, length, desc, obs.obs_point.astype(np.int32))


def model_from_observations(frames: list[Frame], obs: Observations, reader: FeatureReader):
    """The whole map as one pycolmap Reconstruction (point ids 1..P in row order)."""
    from .colmap_db import known_pose_reconstruction
    rec = known_pose_reconstruction(frames, keypoints=lambda f: reader.keypoints(f.name))
    order = np.argsort(obs.obs_point, kind="stable")
    cuts = np.nonzero(np.diff(obs.obs_point[order]))[0] + 1
    for rows, X in zip(np.split(order, cuts), obs.xyz):
        track = pycolmap.Track()
        track.add_elements([pycolmap.TrackElement(int(i) + 1, int(k))
                            for i, k in zip(obs.obs_image[rows], obs.obs_kp[rows])])
        rec.add_point3D(X, track)
    rec.update_point_3d_errors()
    return rec


def triangulate_blocks(frames: list[Frame], pairs: list[tuple[int, int]], store: Path, config: MapConfig,
                       work: Path, on_matches, progress: bool = True, lightglue=None) -> tuple[Observations, dict]:
    """Match and triangulate block by block; `on_matches(global_matches)` receives each
    block's verified matches (frame index pairs) to be written out."""
    from .build import match_pairs, triangulate
    centers = np.array([f.cam_from_world.center for f in frames])
    blocks = split_blocks(centers, config.block_images)
    block_of = np.empty(len(frames), np.int64)
    for b, idx in enumerate(blocks):
        block_of[idx] = b
    reader = FeatureReader(store)
    parts, timings = [], {"matching": 0.0, "points": 0.0}
    n_matched = 0
    try:
        for b, idx in enumerate(progress_bar(blocks, "blocks", progress)):
            own = [(i, j) for i, j in pairs if block_of[i] == b]
            members = np.array(sorted(set(idx.tolist()) | {j for _, j in own}), np.int64)
            local = {int(g): k for k, g in enumerate(members)}
            sub = [frames[g] for g in members]
            feats = {f.name: reader.features(f.name) for f in sub}
            t = time.perf_counter()
            matches = match_pairs(sub, feats, [(local[i], local[j]) for i, j in own], config, True, progress, lightglue)
            timings["matching"] += time.perf_counter() - t
            on_matches({(int(members[i]), int(members[j])): m for (i, j), m in matches.items()})
            n_matched += len(matches)
            t = time.perf_counter()
            if matches:
                with tempfile.TemporaryDirectory(dir=work) as w:
                    rec = triangulate(sub, feats, matches, config, Path(w))
                parts.append(observations_from_reconstruction(rec, members))
                del rec
            timings["points"] += time.perf_counter() - t
            del feats
        obs = Observations.concat(parts) if parts else None
        if obs is None or len(obs.xyz) == 0:
            raise MapError("no 3D point could be made: too few verified matches between mapping images")
        t = time.perf_counter()
        kp_cache: dict[int, np.ndarray] = {}

        def keypoints(i: int) -> np.ndarray:
            if i not in kp_cache:
                kp_cache[i] = reader.keypoints(frames[i].name)
            return kp_cache[i]

        obs, counts = merge_shared_points(obs, frames, keypoints)
        timings["merge"] = time.perf_counter() - t
    finally:
        reader.close()
    return obs, {"blocks": len(blocks), "largest_block": int(max(len(b) for b in blocks)),
                 "verified_pairs": n_matched, **counts, "timings": timings}
