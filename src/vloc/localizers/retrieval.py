"""Image retrieval as a pose baseline (Torii et al. 2011): the query takes the pose of
the most similar mapping image (`top1`), or an interpolation of the top-k poses
weighted by descriptor similarity (`interpolated`). No geometry is estimated: these
are the yardsticks that pose regression is compared with."""
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
from ..maps.mapdir import atomic_map_dir, write_manifest
from .base import Estimate, Prior, Query
from .query_io import extractor_from_manifest, query_features, read_method_manifest


@dataclass(frozen=True)
class RetrievalMapConfig:
    features: str = "sift"              # OpenCV SIFT: fast, and retrieval needs no sub-pixel accuracy
    resize_max: int = 1024
    max_keypoints: int = 4096
    global_descriptor: str = "vlad"     # vlad | bow
    words: int = 0                      # vocabulary size (0: the descriptor's default)

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


def _global(cfg: RetrievalMapConfig):
    from ..retrieval import make_global
    return make_global(cfg.global_descriptor, **({"k": cfg.words} if cfg.words else {}))


def build_retrieval_map(frames: list[Frame], out: Path, config: RetrievalMapConfig = RetrievalMapConfig(),
                        source: dict | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    from ..maps.extract import extract_frames
    from ..retrieval import RetrievalIndex
    frames = [f for f in frames if f.has_pose]
    if len(frames) < 2:
        raise DataError(f"a retrieval map needs at least 2 mapping images with poses, got {len(frames)}")
    t0 = time.perf_counter()
    extractor = make_extractor(config.features, resize_max=config.resize_max, max_keypoints=config.max_keypoints)
    feats = extract_frames(extractor, frames, config.resize_max, progress)
    encoder = _global(config).fit([feats[f.name].descriptors for f in frames])
    vectors = encoder.encode_many([feats[f.name].descriptors for f in frames])
    with atomic_map_dir(out, overwrite) as tmp:
        encoder.save(tmp / "global_descriptor.h5")
        RetrievalIndex(vectors, [f.name for f in frames]).save(tmp / "retrieval")
        poses = [{"name": f.name, "camera": str(f.camera), "q_wxyz": f.cam_from_world.q.tolist(),
                  "t": f.cam_from_world.t.tolist()} for f in frames]
        (tmp / "frames.json").write_text(json.dumps(poses, indent=1))
        stats = {"images": len(frames), "dims": int(vectors.shape[1]),
                 "timings": {"total": time.perf_counter() - t0}}
        manifest = write_manifest(tmp, "retrieval", {"map": config.to_dict(), "extractor": extractor.config_dict()},
                                  source or {}, stats)
    return manifest


class RetrievalLocalizer:
    def __init__(self, manifest: dict, encoder, index, poses: dict[str, Pose], config: RetrievalConfig):
        self.manifest, self.encoder, self.index, self.poses, self.config = manifest, encoder, index, poses, config
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

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        timings: dict[str, float] = {}
        feats, _ = query_features(query, self.extractor, self.resize_max, timings)
        t = time.perf_counter()
        vec = self.encoder.encode(feats.descriptors)
        timings["features"] += time.perf_counter() - t
        t = time.perf_counter()
        k = 1 if self.config.mode == "top1" else self.config.k
        scores, idx = self.index.search(vec[None], k)
        scores, idx = scores[0], idx[0]
        timings["retrieval"] = time.perf_counter() - t
        valid = idx >= 0
        if not valid.any() or scores[0] <= 0:
            return Estimate.failed(f"retrieval found no similar mapping image ({len(feats)} query keypoints)",
                                   timings=timings)
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
