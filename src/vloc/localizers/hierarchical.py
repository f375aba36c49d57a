"""Hierarchical localization (Irschara et al. 2009, Sarlin et al. 2019): retrieve the
top-k mapping images, match the query 2D-2D with each (mutual NN + ratio, or LightGlue
for ALIKED / DISK maps), lift the matches to 2D-3D through the map's tracks, group the
retrieved images into covisibility clusters (Sattler et al. 2011) and estimate a pose
per cluster with PoseLib LO-RANSAC, keeping the one with most inliers. The map is a
structure map (in `structure/`) plus a retrieval index over its images' own features."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import MapError, VlocError
from ..estimation import PoseConfig
from ..maps.config import MapConfig
from ..maps.mapdir import atomic_map_dir, write_manifest
from ..matching import match_mutual_ratio_many
from .base import Estimate, Prior, Query
from .image_table import ImageTable
from .query_io import estimate_query_pose, extractor_from_manifest, query_features, read_method_manifest

MATCHERS = ("mnn-ratio", "lightglue")
RETRIEVAL_PCA_DIM = 256        # VLAD vectors reduced by PCA on maps of at least
RETRIEVAL_PCA_MIN = 1000       # this many images (search time, see retrieval/index.py)


@dataclass(frozen=True)
class HierarchicalConfig:
    k: int = 10                      # mapping images retrieved and matched
    matcher: str = "mnn-ratio"       # mnn-ratio | lightglue (maps with aliked or disk features)
    ratio: float = 0.9               # mnn-ratio: Lowe's ratio (0.8 lost a query of templeSparseRing)
    lightglue_threshold: float = 0.1  # lightglue: match confidence
    clustering: bool = True          # one pose per covisibility cluster, the best kept
    min_shared: int = 1              # 3D points two images share to be in one cluster
    pose: PoseConfig = PoseConfig()

    def __post_init__(self):
        if self.matcher not in MATCHERS:
            raise VlocError(f"hierarchical matcher must be one of {', '.join(MATCHERS)}, got {self.matcher!r}")
        if self.k < 1 or self.min_shared < 1:
            raise VlocError(f"k and min_shared must be >= 1, got {self.k}, {self.min_shared}")
        if not 0 < self.ratio <= 1:
            raise VlocError(f"ratio must be in (0, 1], got {self.ratio}")

    def to_dict(self) -> dict:
        return asdict(self)


def build_hierarchical_map(frames, out: Path, config: MapConfig = MapConfig(), source: dict | None = None,
                           overwrite: bool = False, progress: bool = True, structure_map: Path | None = None) -> dict:
    """A structure map (built here, or copied from `structure_map`, which must have been
    built from the same frames) plus a VLAD retrieval index over its images' features
    and the image table (image_table.py: descriptors and keypoint -> 3D point)."""
    import shutil
    from ..features.store import FeatureReader
    from ..maps.build import build_map
    from ..maps.mapdir import read_manifest
    from ..progress import progress_bar
    from ..retrieval import RetrievalIndex, make_global
    from .image_table import write_image_table
    with atomic_map_dir(out, overwrite) as tmp:
        if structure_map is None:
            inner = build_map(frames, tmp / "structure", config, source, progress=progress)
        else:
            inner = read_manifest(structure_map, verify="size")
            shutil.copytree(structure_map, tmp / "structure", copy_function=_link_or_copy)
            source = source or inner.get("source")
        t_retrieval = time.perf_counter()
        reader = FeatureReader(tmp / "structure" / "features.h5")
        names = reader.names()
        encoder = make_global("vlad")
        encoder.fit(_vocabulary_sample(reader, names, 2 * encoder.config.max_train))
        encoder.save(tmp / "global_descriptor.h5")
        point_rows = image_points_from_model(tmp / "structure" / "model")
        sizes = [reader.num_keypoints(n) for n in names]
        vectors = np.zeros((len(names), encoder.dim), np.float32)

        def images():
            for i, name in enumerate(progress_bar(names, "image table", progress)):
                desc = reader.descriptors(name)
                vectors[i] = encoder.encode(desc)
                yield desc, point_rows.get(name, np.full(len(desc), -1))

        write_image_table(tmp, names, sizes, encoder.descriptor_dim, images())
        reader.close()
        RetrievalIndex(vectors, names, pca_dim=RETRIEVAL_PCA_DIM if len(names) >= RETRIEVAL_PCA_MIN else None
                       ).save(tmp / "retrieval")
        extra = time.perf_counter() - t_retrieval            # retrieval index and image table
        total = inner["stats"]["timings"]["total"] + extra    # a copied structure map: its build counts
        stats = {**inner["stats"], "timings": {**inner["stats"]["timings"], "retrieval_and_table": extra,
                                               "total": total}}
        known = {f"structure/{rel}": info for rel, info in inner["files"].items()}   # checked, not rehashed
        return write_manifest(tmp, "hierarchical", inner["config"], source or {}, stats, known)


def _link_or_copy(src, dst):
    """Map files are never changed in place (maps are rewritten whole), so the copy of a
    structure map can share its files: a hard link, or a copy across file systems."""
    import os
    import shutil
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _vocabulary_sample(reader, names: list[str], total: int) -> list[np.ndarray]:
    """Seeded random descriptors of every image, about `total` in all (all of them on
    small maps): the vocabulary sees the whole map without holding all its features."""
    per_image, rng = -(-total // len(names)), np.random.default_rng(0)
    return [d[np.sort(rng.permutation(len(d))[:per_image])] for d in map(reader.descriptors, names)]


def image_points_from_model(model_dir: Path) -> dict[str, np.ndarray]:
    """For each image, keypoint index -> row of the point in points.h5 (its points are
    the model's, sorted by id), or -1."""
    from .._libs import pycolmap
    rec = pycolmap.Reconstruction(str(model_dir))
    ids = np.array(sorted(rec.points3D), dtype=np.int64)
    out = {}
    for im in rec.images.values():              # only observed keypoints touched in Python
        rows = np.full(im.num_points2D(), -1, dtype=np.int64)
        idx = np.asarray(im.get_observation_point2D_idxs(), dtype=np.int64)
        if len(idx):
            pids = np.array([p.point3D_id for p in im.get_observation_points2D()], dtype=np.int64)
            rows[idx] = np.searchsorted(ids, pids)
        out[im.name] = rows
    return out


class LazyFeatures:
    """The map images' features (for LightGlue: keypoints, descriptors, image size), read
    from features.h5 when first needed (a query touches k of them), the most recent
    `keep` kept in memory."""

    def __init__(self, path: Path, keep: int = 256):
        from collections import OrderedDict
        from ..features.store import FeatureReader
        self.reader, self.keep, self.cache = FeatureReader(path), keep, OrderedDict()
        self.read = self.reader.features

    def __getitem__(self, name: str):
        if name in self.cache:
            self.cache.move_to_end(name)
        else:
            self.cache[name] = self.read(name)
            if len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        return self.cache[name]


def covisibility_clusters(names: list[str], image_points: dict[str, np.ndarray],
                          min_shared: int = 1) -> list[list[str]]:
    """Connected components of the images `names` (retrieval order), two images being
    linked when they observe at least `min_shared` common 3D points (hloc's
    `do_covisibility_clustering` with min_shared=1). `image_points[name]`: point ids of
    the image's keypoints, -1 for none. Largest cluster first, ties by best rank."""
    pts = [np.unique(image_points[n][image_points[n] >= 0]) for n in names]
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if root(i) != root(j) and len(np.intersect1d(pts[i], pts[j], assume_unique=True)) >= min_shared:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(names)):
        groups.setdefault(root(i), []).append(i)
    return [[names[i] for i in g] for g in sorted(groups.values(), key=lambda g: (-len(g), g[0]))]


def _lightglue_for(manifest: dict, config: HierarchicalConfig):
    from ..matching.lightglue import lightglue_for_extractor
    return lightglue_for_extractor(manifest["config"]["extractor"], config.lightglue_threshold)


class HierarchicalLocalizer:
    """`image_feats[name]`: a map image's descriptors (mnn-ratio matcher: from the image
    table) or its Features (lightglue); `image_p3d[name]`: its keypoints' point rows
    (-1: none)."""

    def __init__(self, manifest, encoder, index, image_feats, image_p3d, xyz, config: HierarchicalConfig):
        self.manifest, self.encoder, self.index = manifest, encoder, index
        self.image_feats, self.image_p3d, self.xyz, self.config = image_feats, image_p3d, xyz, config
        self.extractor, self.resize_max = extractor_from_manifest(manifest)
        self.lightglue = _lightglue_for(manifest, config) if config.matcher == "lightglue" else None

    @classmethod
    def load(cls, map_dir, config: HierarchicalConfig = HierarchicalConfig()) -> HierarchicalLocalizer:
        from ..maps.points import read_point_xyz
        from ..retrieval import RetrievalIndex, load_global
        map_dir = Path(map_dir)
        manifest = read_method_manifest(map_dir, "hierarchical")
        if config.matcher == "lightglue":
            _lightglue_for(manifest, config)          # fail before reading the map
        if not (map_dir / "image_index.h5").is_file():
            raise MapError(f"{map_dir} is a hierarchical map of an older vloc (no image table): rebuild it")
        table = ImageTable.load(map_dir)
        xyz = read_point_xyz(map_dir / "structure" / "points.h5")
        images = (table.descriptors if config.matcher == "mnn-ratio"
                  else LazyFeatures(map_dir / "structure" / "features.h5"))
        return cls(manifest, load_global(map_dir / "global_descriptor.h5"), RetrievalIndex.load(map_dir / "retrieval"),
                   images, table.point_rows, xyz, config)

    def _match(self, feats, names: list[str]) -> list[np.ndarray]:
        if self.lightglue is not None:
            return [self.lightglue.match(feats, self.image_feats[n]) for n in names]
        return match_mutual_ratio_many(feats.descriptors, [self.image_feats[n] for n in names], self.config.ratio)

    def retrieve(self, query: Query, k: int, timings: dict):
        """The query's local features, its image size, and the names of the k most
        similar mapping images (adds 'read', 'features', 'retrieval' to `timings`)."""
        feats, size = query_features(query, self.extractor, self.resize_max, timings)
        t = time.perf_counter()
        _, idx = self.index.search(self.encoder.encode(feats.descriptors)[None], k)
        timings["retrieval"] = time.perf_counter() - t
        return feats, size, [self.index.names[i] for i in idx[0] if i >= 0]

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        timings: dict[str, float] = {}
        feats, size, names = self.retrieve(query, self.config.k, timings)
        if not names:
            return Estimate.failed("no mapping image retrieved", timings=timings)

        t = time.perf_counter()
        lifted = {}                           # image -> (query keypoint, point row) pairs
        for name, m in zip(names, self._match(feats, names)):
            p3d = self.image_p3d[name][m[:, 1]]
            lifted[name] = np.stack([m[p3d >= 0, 0], p3d[p3d >= 0]], axis=1)
        timings["matching"] = time.perf_counter() - t

        t = time.perf_counter()
        clusters = (covisibility_clusters(names, self.image_p3d, self.config.min_shared)
                    if self.config.clustering else [names])
        timings["clustering"] = time.perf_counter() - t
        t = time.perf_counter()
        tried = [self._pose(feats, size, query, lifted, c) for c in clusters]
        best = max(tried, key=_inliers)
        if len(clusters) > 1 and (best[2] is None or best[2].cam_from_world is None):
            # the query may see parts the map never connected (the views linking them are
            # missing: often the query's own viewpoint): all retrieved images together
            tried.append(self._pose(feats, size, query, lifted, names))
            best = max(tried, key=_inliers)
        timings["pose"] = time.perf_counter() - t

        _, n, res = best
        if res is not None and res.cam_from_world is not None:
            return Estimate(res.cam_from_world, res.num_inliers, n, None, timings, res.camera)
        return Estimate.failed(_failure_reason(names, clusters, tried, self.config), timings=timings,
                               inliers=max(_inliers(best), 0), correspondences=n)

    def _pose(self, feats, size, query, lifted, images):
        """(number of images, of 2D-3D pairs, PoseResult or None if too few pairs)."""
        pairs = np.unique(np.concatenate([lifted[n] for n in images]), axis=0)
        if len(pairs) < self.config.pose.min_inliers:      # cannot reach the minimum
            return len(images), len(pairs), None
        qi, pi = pairs.T
        return len(images), len(pairs), estimate_query_pose(feats.keypoints[qi], self.xyz[pi], query, size,
                                                            self.resize_max, self.config.pose)


def _inliers(tried) -> int:
    return tried[2].num_inliers if tried[2] is not None else -1


def _failure_reason(names, clusters, tried, config: HierarchicalConfig) -> str:
    if max(n for _, n, _ in tried) == 0:
        return f"no 2D-3D match through the {len(names)} retrieved images"
    where = (f"{len(clusters)} covisibility cluster(s) of the {len(names)} retrieved images"
             + (" (and all together)" if len(tried) > len(clusters) else "")
             if config.clustering else f"the {len(names)} retrieved images")
    size, n, res = max(tried, key=lambda x: (_inliers(x), x[1]))
    if res is None:
        return (f"{where}: too few 2D-3D matches: at most {n} (from {size} image(s)), "
                f"need {config.pose.min_inliers} inliers")
    return f"{where}: best from {size} image(s): {res.reason}"
