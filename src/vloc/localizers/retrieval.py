"""Image retrieval as a pose baseline (Torii et al. 2011): the query takes the pose of
the most similar mapping image (`top1`), or an interpolation of the top-k poses
weighted by descriptor similarity (`interpolated`). No geometry is estimated: these
are the yardsticks that pose regression is compared with.

The global descriptor is computed from the images' local features (`vlad`, `bow`) or
from the image itself (`aliked-gem`, `aliked-netvlad`: ALIKED dense maps, colour
images at `image_size`; `densevlad`: dense RootSIFT + VLAD; the local-feature options
are then unused)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..configs import check_keys
from ..datasets import Frame
from ..errors import DataError, MapError, VlocError
from ..features import make_extractor
from ..geometry import Pose, interpolate_poses
from ..imageio import read_rgb
from ..maps.mapdir import atomic_map_dir, write_manifest
from .base import Estimate, Prior, Query
from .query_io import extractor_from_manifest, query_features, read_method_manifest


@dataclass(frozen=True)
class RetrievalMapConfig:
    features: str = "sift"              # OpenCV SIFT: fast, and retrieval needs no sub-pixel accuracy
    resize_max: int = 1024
    max_keypoints: int = 4096
    global_descriptor: str = "vlad"     # vlad | bow (local features) | aliked-gem | aliked-netvlad | densevlad
    words: int = 0                      # vocabulary size or NetVLAD words (0: the descriptor's default)
    image_size: int = 0                 # aliked-*, densevlad: longer image side (0: default, 512 / 640)
    whiten: int = 0                     # aliked-*, densevlad: PCA-whitening to this many dims (0: off)
    head: bool = False                  # aliked-*: projection head trained on the map (positives by pose)
    rotate180: bool = False             # aliked-*: also pool the image turned upside down (2x the time)

    def __post_init__(self):
        from ..retrieval import GLOBAL_DESCRIPTORS, IMAGE_GLOBAL_DESCRIPTORS
        known = [*GLOBAL_DESCRIPTORS, *IMAGE_GLOBAL_DESCRIPTORS]
        if self.global_descriptor not in known:
            raise VlocError(f"unknown global_descriptor {self.global_descriptor!r}; available: {', '.join(known)}")
        extra = [f for f in IMAGE_OPTIONS if f not in _image_options(self.global_descriptor)
                 and getattr(self, f) != getattr(RetrievalMapConfig, f)]
        if extra:
            takers = [n for n in IMAGE_GLOBAL_DESCRIPTORS if set(extra) <= set(_image_options(n))]
            takers = " and ".join([", ".join(takers[:-1]), takers[-1]] if len(takers) > 1 else takers)
            raise VlocError(f"retrieval map option(s) {', '.join(extra)} apply to {takers} only, "
                            f"not {self.global_descriptor}")
        if self.global_descriptor in IMAGE_GLOBAL_DESCRIPTORS:
            _global(self)                   # checks the options now, not after reading the images

    @property
    def image_based(self) -> bool:
        from ..retrieval import IMAGE_GLOBAL_DESCRIPTORS
        return self.global_descriptor in IMAGE_GLOBAL_DESCRIPTORS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RetrievalMapConfig:
        check_keys(cls, d, "retrieval map option(s)")
        return cls(**d)


@dataclass(frozen=True)
class RetrievalConfig:
    mode: str = "top1"                  # top1 | interpolated
    k: int = 3                          # images interpolated
    sharpness: float = 20.0             # weights = exp(sharpness * (similarity - best))

    def __post_init__(self):
        if self.mode not in ("top1", "interpolated"):
            raise VlocError(f"retrieval mode must be top1 or interpolated, got {self.mode!r}")

    def to_dict(self) -> dict:
        return asdict(self)


IMAGE_OPTIONS = ("image_size", "whiten", "head", "rotate180")     # of the image-based descriptors


def _image_options(name: str) -> tuple[str, ...]:
    """The IMAGE_OPTIONS that global descriptor `name` takes."""
    from ..retrieval import IMAGE_GLOBAL_DESCRIPTORS
    if name == "densevlad":
        return ("image_size", "whiten")
    return IMAGE_OPTIONS if name in IMAGE_GLOBAL_DESCRIPTORS else ()


def _global(cfg: RetrievalMapConfig):
    from ..retrieval import make_global
    options = {"k": cfg.words} if cfg.words else {}
    options.update({f: getattr(cfg, f) for f in _image_options(cfg.global_descriptor)
                    if f != "image_size" or cfg.image_size})
    return make_global(cfg.global_descriptor, **options)


def _image_vectors(frames: list[Frame], encoder, progress: bool) -> tuple[np.ndarray, dict, dict]:
    """Fit an image-based encoder on the mapping images (one network pass per image,
    decoding in threads) and encode them. Returns (vectors, timings, stats)."""
    from concurrent.futures import ThreadPoolExecutor
    from ..progress import progress_bar
    size = encoder.config.image_size
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(read_rgb, f.image_path, size, f.name, f.camera) for f in frames]
        grids = [encoder.dense(fut.result()).astype(np.float16) for fut in
                 progress_bar(futures, "dense features", progress, total=len(frames))]
    t1 = time.perf_counter()
    encoder.fit_dense(grids, [f.cam_from_world for f in frames])
    vectors = np.stack([encoder.encode_dense(g) for g in grids])
    t2 = time.perf_counter()
    stats = {}
    if getattr(encoder, "head_training", None) is not None:
        h = encoder.head_training
        stats["head"] = {"initial_loss": round(h.initial_loss, 4), "final_loss": round(h.final_loss, 4),
                         "epochs": len(h.epoch_losses)}
    return vectors, {"features": t1 - t0, "fit_encode": t2 - t1}, stats


def build_retrieval_map(frames: list[Frame], out: Path, config: RetrievalMapConfig = RetrievalMapConfig(),
                        source: dict | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    from ..maps.extract import extract_frames
    from ..retrieval import RetrievalIndex
    frames = [f for f in frames if f.has_pose]
    if len(frames) < 2:
        raise DataError(f"a retrieval map needs at least 2 mapping images with poses, got {len(frames)}")
    t0 = time.perf_counter()
    encoder = _global(config)
    timings, stats = {}, {}
    if config.image_based:
        vectors, timings, stats = _image_vectors(frames, encoder, progress)
        c = encoder.config
        extractor_config = (encoder.extractor_config() if config.global_descriptor == "densevlad" else
                            {"name": "aliked-dense", "model": c.model, "resize_max": c.image_size, "cell": c.cell})
    else:
        extractor = make_extractor(config.features, resize_max=config.resize_max,
                                   max_keypoints=config.max_keypoints)
        feats = extract_frames(extractor, frames, config.resize_max, progress)
        encoder.fit([feats[f.name].descriptors for f in frames])
        vectors = encoder.encode_many([feats[f.name].descriptors for f in frames])
        extractor_config = extractor.config_dict()
    with atomic_map_dir(out, overwrite) as tmp:
        encoder.save(tmp / "global_descriptor.h5")
        RetrievalIndex(vectors, [f.name for f in frames]).save(tmp / "retrieval")
        poses = [{"name": f.name, "camera": str(f.camera), "q_wxyz": f.cam_from_world.q.tolist(),
                  "t": f.cam_from_world.t.tolist()} for f in frames]
        (tmp / "frames.json").write_text(json.dumps(poses, indent=1))
        stats = {"images": len(frames), "dims": int(vectors.shape[1]), **stats,
                 "timings": {**timings, "total": time.perf_counter() - t0}}
        manifest = write_manifest(tmp, "retrieval", {"map": config.to_dict(), "extractor": extractor_config},
                                  source or {}, stats)
    return manifest


class RetrievalLocalizer:
    def __init__(self, manifest: dict, encoder, index, poses: dict[str, Pose], config: RetrievalConfig):
        self.manifest, self.encoder, self.index, self.poses, self.config = manifest, encoder, index, poses, config
        if getattr(encoder, "input", "local") == "image":
            self.extractor, self.resize_max = None, encoder.config.image_size
        else:
            self.extractor, self.resize_max = extractor_from_manifest(manifest)

    @classmethod
    def load(cls, map_dir, config: RetrievalConfig = RetrievalConfig()) -> RetrievalLocalizer:
        from ..retrieval import RetrievalIndex, load_global
        map_dir = Path(map_dir)
        manifest = read_method_manifest(map_dir, "retrieval")
        try:
            frames = json.loads((map_dir / "frames.json").read_text())
            poses = {f["name"]: Pose.from_qt(f["q_wxyz"], f["t"]) for f in frames}
        except (OSError, ValueError, KeyError) as e:
            raise MapError(f"cannot read {map_dir / 'frames.json'}: {e}") from None
        return cls(manifest, load_global(map_dir / "global_descriptor.h5"),
                   RetrievalIndex.load(map_dir / "retrieval"), poses, config)

    def query_vector(self, query: Query, timings: dict | None = None) -> tuple[np.ndarray, str]:
        """The query's global descriptor (adds 'read' and 'features' to `timings`), and
        what it was computed from (for failure messages)."""
        timings = {} if timings is None else timings
        if self.extractor is None:                 # from the image
            t = time.perf_counter()
            img = read_rgb(query.image_path, self.resize_max, f"query {query.name}", query.camera, query.image)
            timings["read"] = time.perf_counter() - t
            t = time.perf_counter()
            vec = self.encoder.encode_image(img)
            timings["features"] = time.perf_counter() - t
            return vec, f"{self.encoder.name} of a {img.shape[1]}x{img.shape[0]} image"
        feats, _ = query_features(query, self.extractor, self.resize_max, timings)
        t = time.perf_counter()
        vec = self.encoder.encode(feats.descriptors)
        timings["features"] += time.perf_counter() - t
        return vec, f"{len(feats)} query keypoints"

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        timings: dict[str, float] = {}
        vec, source = self.query_vector(query, timings)
        t = time.perf_counter()
        k = 1 if self.config.mode == "top1" else self.config.k
        scores, idx = self.index.search(vec[None], k)
        scores, idx = scores[0], idx[0]
        timings["retrieval"] = time.perf_counter() - t
        valid = idx >= 0
        if not valid.any() or scores[0] <= 0:
            return Estimate.failed(f"retrieval found no similar mapping image ({source})", timings=timings)
        names = [self.index.names[i] for i in idx[valid]]
        if self.config.mode == "top1":
            pose = self.poses[names[0]]
        else:
            s = scores[valid]
            w = np.exp(self.config.sharpness * (s - s.max()))
            pose = interpolate_poses([self.poses[n] for n in names], w)
        return Estimate(pose, 0, len(names), None, timings, query.camera)


def load_top1(map_dir, config: RetrievalConfig | None = None):
    return RetrievalLocalizer.load(map_dir, config or RetrievalConfig(mode="top1"))


def load_interpolated(map_dir, config: RetrievalConfig | None = None):
    return RetrievalLocalizer.load(map_dir, config or RetrievalConfig(mode="interpolated"))
