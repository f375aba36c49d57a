"""Online leaf adaptation (Cavallari et al. CVPR 2017, "On-the-fly adaptation of
regression forests for online camera relocalisation"): a forest trained on one scene
keeps its splits; on a new scene its leaves are emptied and refilled frame by frame
with the scene coordinates of posed RGB-D frames (a reservoir per leaf), and the
modes of the leaves a frame reached are recomputed by mean shift. On the benchmark
(`benchmarks/forest.py --adapt`, 320x240, 5 trees of depth 20, 1000 pixels per frame)
a frame costs ~70 ms of one core, reading it included."""
from __future__ import annotations

import time

import numpy as np

from ..geometry import Pose
from .config import ForestConfig
from .forest import Forest, LeafStore, RGBDFrame, RGBDImages, camera_points, sample_pixels


class LeafAdapter:
    """Refits the leaves of `forest` in place; the split nodes are never touched."""

    def __init__(self, forest: Forest, config: ForestConfig = ForestConfig()):
        self.forest, self.config = forest, config
        self.rng = np.random.default_rng([config.seed, 7])
        self.stores = [LeafStore(t.n_leaves, config.leaf_capacity, self.rng) for t in forest.trees]
        self.frames = 0

    def reset(self) -> None:
        """Forget every leaf: the forest predicts nothing until frames are added."""
        for tree, store in zip(self.forest.trees, self.stores):
            store.clear()
            tree.modes = np.full_like(tree.modes, np.nan)
            tree.weights = np.zeros_like(tree.weights)
        self.frames = 0

    def add_frame(self, frame: RGBDFrame, cam_from_world: Pose) -> dict:
        """Pass the frame's pixels down every tree, add their scene coordinates to the
        leaves they reach and recompute those leaves' modes."""
        t = time.perf_counter()
        images = RGBDImages.one(frame)
        f, x, y = sample_pixels(images.depth > 0, self.config.samples_per_frame, self.rng)
        coords = cam_from_world.inverse().transform(camera_points(frame.depth, frame.camera, x, y))
        px = self.forest.pixels(images, f, x, y)
        updated = 0
        for tree, store in zip(self.forest.trees, self.stores):
            touched = store.add(tree.leaves(images, px), coords)
            tree.modes[touched], tree.weights[touched] = store.modes(touched, self.config.bandwidth,
                                                                     self.config.max_modes)
            updated += len(touched)
        self.frames += 1
        return {"seconds": time.perf_counter() - t, "pixels": len(x), "leaves_updated": updated}
