"""Hierarchical localization (Irschara et al. 2009, Sarlin et al. 2019): retrieve the
top-k mapping images, match the query 2D-2D with each (mutual NN + ratio), lift the
matches to 2D-3D through the map's tracks, then PoseLib LO-RANSAC. The map is a
structure map (in `structure/`) plus a retrieval index over its images' own features."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..estimation import PoseConfig
from ..maps.config import MapConfig
from ..maps.mapdir import atomic_map_dir, write_manifest
from ..matching import match_mutual_ratio
from .base import Estimate, Prior, Query
from .query_io import estimate_query_pose, extractor_from_manifest, query_features, read_method_manifest


@dataclass(frozen=True)
class HierarchicalConfig:
    k: int = 10                      # mapping images retrieved and matched
    ratio: float = 0.8               # 2D-2D ratio test
    pose: PoseConfig = PoseConfig()

    def to_dict(self) -> dict:
        return asdict(self)


def build_hierarchical_map(frames, out: Path, config: MapConfig = MapConfig(), source: dict | None = None,
                           overwrite: bool = False, progress: bool = True) -> dict:
    from ..features.store import read_features
    from ..maps.build import build_map
    from ..retrieval import RetrievalIndex, make_global
    t0 = time.perf_counter()
    with atomic_map_dir(out, overwrite) as tmp:
        inner = build_map(frames, tmp / "structure", config, source, progress=progress)
        feats = read_features(tmp / "structure" / "features.h5")
        names = sorted(feats)
        encoder = make_global("vlad").fit([feats[n].descriptors for n in names])
        encoder.save(tmp / "global_descriptor.h5")
        RetrievalIndex(encoder.encode_many([feats[n].descriptors for n in names]), names).save(tmp / "retrieval")
        stats = {**inner["stats"], "timings": {**inner["stats"]["timings"], "total": time.perf_counter() - t0}}
        return write_manifest(tmp, "hierarchical", inner["config"], source or {}, stats)


class HierarchicalLocalizer:
    def __init__(self, manifest, encoder, index, image_feats, image_p3d, xyz, config: HierarchicalConfig):
        self.manifest, self.encoder, self.index = manifest, encoder, index
        self.image_feats, self.image_p3d, self.xyz, self.config = image_feats, image_p3d, xyz, config
        self.extractor, self.resize_max = extractor_from_manifest(manifest)

    @classmethod
    def load(cls, map_dir, config: HierarchicalConfig = HierarchicalConfig()) -> HierarchicalLocalizer:
        from .._libs import pycolmap
        from ..features.store import read_features
        from ..retrieval import RetrievalIndex, load_global
        map_dir = Path(map_dir)
        manifest = read_method_manifest(map_dir, "hierarchical")
        feats = read_features(map_dir / "structure" / "features.h5")
        rec = pycolmap.Reconstruction(str(map_dir / "structure" / "model"))
        ids = sorted(rec.points3D)
        row = {pid: i for i, pid in enumerate(ids)}
        xyz = np.array([rec.points3D[p].xyz for p in ids])
        image_p3d = {}
        for im in rec.images.values():       # keypoint index -> row in xyz, or -1
            image_p3d[im.name] = np.array([row[p.point3D_id] if p.has_point3D() else -1 for p in im.points2D])
        return cls(manifest, load_global(map_dir / "global_descriptor.h5"), RetrievalIndex.load(map_dir / "retrieval"),
                   feats, image_p3d, xyz, config)

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        timings: dict[str, float] = {}
        feats, size = query_features(query, self.extractor, self.resize_max, timings)
        t = time.perf_counter()
        _, idx = self.index.search(self.encoder.encode(feats.descriptors)[None], self.config.k)
        names = [self.index.names[i] for i in idx[0] if i >= 0]
        timings["retrieval"] = time.perf_counter() - t
        t = time.perf_counter()
        pairs = set()
        for name in names:
            m = match_mutual_ratio(feats.descriptors, self.image_feats[name].descriptors, self.config.ratio)
            p3d = self.image_p3d[name][m[:, 1]]
            pairs.update(zip(m[p3d >= 0, 0].tolist(), p3d[p3d >= 0].tolist()))
        timings["matching"] = time.perf_counter() - t
        if not pairs:
            return Estimate.failed(f"no 2D-3D match through the {len(names)} retrieved images", timings=timings)
        qi, pi = np.array(sorted(pairs)).T
        t = time.perf_counter()
        res = estimate_query_pose(feats.keypoints[qi], self.xyz[pi], query, size, self.resize_max,
                                  self.config.pose)
        timings["pose"] = time.perf_counter() - t
        return Estimate(res.cam_from_world, res.num_inliers, len(qi), res.reason, timings, res.camera)
