"""Absolute pose regression (PoseNet, Kendall et al. 2015; MapNet, Brahmbhatt et al.
2018): a network trained on the mapping frames regresses the query's camera centre and
rotation from the image alone. The map is the network: `model.pt` (a state dict) and
`network.json` (architecture and input size)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..datasets import Frame
from ..errors import DataError, MapError
from ..geometry import Pose, quat_to_rotmat
from ..learning.config import PoseRegressionConfig
from ..maps.mapdir import atomic_map_dir, write_manifest
from .base import Estimate, Prior, Query
from .query_io import read_method_manifest

__all__ = ["PoseRegressionConfig", "RegressionLocalizer", "build_regression_map"]

VARIANTS = ("posenet", "mapnet")


def build_regression_map(frames: list[Frame], out: Path, config: PoseRegressionConfig = PoseRegressionConfig(),
                         source: dict | None = None, overwrite: bool = False, progress: bool = True,
                         variant: str = "posenet", checkpoint: Path | None = None) -> dict:
    """Train on the mapping frames and write the map. Training is checkpointed after
    every epoch to `checkpoint` (default: a hidden file next to `out`), resumed from it
    by a rerun with the same config and frames, and removed when the map is written."""
    import torch
    from ..learning.train import train_pose_regressor
    out = Path(out)
    if variant not in VARIANTS:
        raise MapError(f"unknown pose regression variant {variant!r}; available: {', '.join(VARIANTS)}")
    if out.exists() and not overwrite:          # before training, not after
        raise MapError(f"output exists: {out} (use --overwrite to replace it)")
    frames = [f for f in frames if f.has_pose]
    if len(frames) < 2:
        raise DataError(f"a {variant} map needs at least 2 mapping images with poses, got {len(frames)}")
    t0 = time.perf_counter()
    checkpoint = Path(checkpoint) if checkpoint else out.parent / f".{out.name}.training.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    trainer = train_pose_regressor(frames, config, variant, checkpoint, progress)
    t1 = time.perf_counter()
    h, w = trainer.data.images.shape[2:]
    network = {"trunk": config.trunk, "width": config.width, "feature_dim": config.feature_dim,
               "input_size": [int(w), int(h)]}
    last = trainer.history[-1] if trainer.history else {}
    stats = {"images": len(frames), "training_images": len(trainer.train_idx),
             "validation_images": len(trainer.val_idx), "epochs": trainer.epoch, "steps": trainer.steps,
             "best_epoch": trainer.best_epoch, "early_stopped": trainer.stopped,
             "best_epoch_loss": trainer.history[trainer.best_epoch]["phase"] if trainer.best_epoch >= 0 else None,
             "stopped_by_time_budget": trainer.out_of_time,
             "reprojection_points": trainer.points_source, "training_seconds": trainer.seconds,
             "final_loss": last.get("loss"),
             "validation": trainer.evaluate(trainer.val_idx) if len(trainer.val_idx) else None,
             "training_fit": trainer.evaluate(trainer.train_idx),      # no augmentation: under/overfit
             "learned_weights": trainer.learned_weights(),             # at the end of training
             "parameters": sum(p.numel() for p in trainer.model.parameters()),
             "timings": {"training": t1 - t0}}
    with atomic_map_dir(out, overwrite) as tmp:
        torch.save(trainer.model.state_dict(), tmp / "model.pt")
        (tmp / "network.json").write_text(json.dumps(network, indent=1))
        (tmp / "history.json").write_text(json.dumps(trainer.history, indent=1))
        stats["timings"]["total"] = time.perf_counter() - t0
        manifest = write_manifest(tmp, variant, {"map": config.to_dict(), "network": network}, source or {}, stats)
    checkpoint.unlink(missing_ok=True)
    return manifest


def build_mapnet_map(frames, out, config=PoseRegressionConfig(), source=None, overwrite=False, progress=True):
    return build_regression_map(frames, out, config, source, overwrite, progress, variant="mapnet")


class RegressionLocalizer:
    """A pose per query straight from the network (no correspondences, no RANSAC)."""

    def __init__(self, manifest: dict, model, input_size: tuple[int, int]):
        self.manifest, self.model, self.input_size = manifest, model, tuple(input_size)

    @classmethod
    def load(cls, map_dir, config=None) -> RegressionLocalizer:
        """`config`: no query-time options; accepted for the registry's signature."""
        import torch
        from ..learning.networks import PoseRegressor
        map_dir = Path(map_dir)
        manifest = read_manifest_any(map_dir)
        try:
            net = json.loads((map_dir / "network.json").read_text())
            model = PoseRegressor(net["trunk"], int(net["feature_dim"]), int(net["width"]))
            state = torch.load(map_dir / "model.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise MapError(f"cannot load the network of map {map_dir}: {str(e).splitlines()[0]}") from None
        return cls(manifest, model.eval(), net["input_size"])

    def preprocess(self, image: np.ndarray):
        """(1, 3, H, W) float RGB in [0, 1] at the network's input size."""
        from ..learning.data import to_network_input
        return to_network_input(image, self.input_size)

    def localize(self, query: Query, prior: Prior | None = None) -> Estimate:
        import torch
        from ..imageio import read_rgb, resize_max
        timings: dict[str, float] = {}
        t = time.perf_counter()
        size = max(self.input_size)
        if query.image is not None:
            img = np.asarray(query.image)
            if query.camera is not None and img.ndim >= 2 and (query.camera.width, query.camera.height) != (
                    img.shape[1], img.shape[0]):
                raise DataError(f"query {query.name}: image is {img.shape[1]}x{img.shape[0]} but the camera says "
                                f"{query.camera.width}x{query.camera.height}")
            readable = img.ndim in (2, 3) and img.size and img.dtype in (np.uint8, np.float32, np.float64)
            x = self.preprocess(resize_max(img, size) if readable else img)   # else preprocess says why
        else:
            x = self.preprocess(read_rgb(query.image_path, size, f"query {query.name}", query.camera))
        timings["read"] = time.perf_counter() - t
        t = time.perf_counter()
        with torch.inference_mode():
            centre, q = self.model(x)
        timings["regression"] = time.perf_counter() - t
        centre, q = centre[0].double().numpy(), q[0].double().numpy()
        R = quat_to_rotmat(q)
        return Estimate(Pose(R, -R @ centre), 0, 0, None, timings, query.camera)


def read_manifest_any(map_dir: Path) -> dict:
    """The manifest of a posenet or mapnet map."""
    from ..maps.mapdir import read_manifest
    manifest = read_manifest(map_dir)
    if manifest.get("method") not in VARIANTS:
        return read_method_manifest(map_dir, "posenet")        # the error names the method
    return manifest
