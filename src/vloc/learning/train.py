"""Training a pose regressor on the CPU: Adam, seeded batches and augmentation,
early stopping on held-out mapping frames (every Kth), and resumable checkpoints
(tensors, numbers and strings only: written with `torch.save`, read with
`weights_only=True`). MapNet batches pair each frame with one of its nearest frames
and add relative-pose terms."""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import VlocError
from .config import PoseRegressionConfig
from .data import PoseData, augment
from .losses import (LearnedWeighting, hand_tuned_loss, pose_errors, quaternion_distance, relative_poses,
                     reprojection_loss)
from .networks import PoseRegressor, canonical_quaternion

VARIANTS = ("posenet", "mapnet")


def build_model(config: PoseRegressionConfig, centres: torch.Tensor | None = None) -> PoseRegressor:
    """A freshly initialised network (seeded, without touching torch's global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = PoseRegressor(config.trunk, config.feature_dim, config.width)
    if centres is not None:
        model.set_position_normalisation(centres)
    return model


def holdout_split(n: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) indices: every `every`th frame is held out (none with 0 or
    when fewer than 2 frames would be left to train on)."""
    idx = np.arange(n)
    if every <= 0 or n - len(idx[every - 1::every]) < 2 or n < every:
        return idx, idx[:0]
    held = idx[every - 1::every]
    return np.setdiff1d(idx, held), held


def neighbours(centres: torch.Tensor, quats: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) for each frame its k nearest other frames (centre distance in units of
    the spread, plus the quaternion distance: near in space and looking alike). The
    candidates are the 8k nearest centres from a KD-tree (no N x N matrix: 10k frames)."""
    from scipy.spatial import cKDTree
    c, q = centres.double().numpy(), quats.double().numpy()
    scale = max(float(np.sqrt(((c - c.mean(0)) ** 2).sum(1).mean())), 1e-9)
    k = min(k, len(c) - 1)
    _, cand = cKDTree(c / scale).query(c / scale, k=min(len(c), 8 * k + 1))
    cand = cand.reshape(len(c), -1)
    d = (np.linalg.norm(c[cand] - c[:, None], axis=2) / scale
         + np.minimum(np.linalg.norm(q[cand] - q[:, None], axis=2), np.linalg.norm(q[cand] + q[:, None], axis=2)))
    d[cand == np.arange(len(c))[:, None]] = np.inf
    best = np.take_along_axis(cand, np.argsort(d, axis=1, kind="stable")[:, :k], axis=1)
    return torch.from_numpy(best.astype(np.int64))


def epochs_that_fit(epoch: int, epochs: int, seconds: float, longest: float, budget: float) -> int:
    """The epochs a budgeted training will have run when it stops (at most `epochs`),
    each assumed as long as the longest so far; at least the next one."""
    return max(epoch + 1, min(epochs, epoch + int((budget - seconds) // longest)))


class Trainer:
    """Holds everything that training changes, so that `state_dict()` /
    `load_state_dict()` resume it exactly (same batches, augmentations and weights)."""

    def __init__(self, model: PoseRegressor, data: PoseData, config: PoseRegressionConfig,
                 variant: str = "posenet", train_idx=None, val_idx=None):
        if variant not in VARIANTS:
            raise VlocError(f"unknown pose regression variant {variant!r}; available: {', '.join(VARIANTS)}")
        if config.loss == "reprojection" and data.points is None:
            raise VlocError("the reprojection loss needs points per frame (load_pose_data points_per_frame)")
        self.model, self.data, self.config, self.variant = model, data, config, variant
        self.train_idx = torch.as_tensor(np.arange(len(data)) if train_idx is None else train_idx, dtype=torch.long)
        self.val_idx = torch.as_tensor([] if val_idx is None else val_idx, dtype=torch.long)
        if len(self.train_idx) < 2:
            raise VlocError(f"pose regression needs at least 2 training frames, got {len(self.train_idx)}")
        self.positions = (data.centres - model.position_mean) / model.position_scale
        self.weighting = (LearnedWeighting(from_first_batch=config.weighting_init == "first-batch")
                          if config.loss == "learned" else None)
        if variant == "mapnet":
            local = neighbours(data.centres[self.train_idx], data.quaternions[self.train_idx], config.mapnet_neighbours)
            self.neighbours = torch.zeros(len(data), local.shape[1], dtype=torch.long)   # by frame index
            self.neighbours[self.train_idx] = self.train_idx[local]
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        weights = list(self.weighting.parameters()) if self.weighting is not None else []
        if weights:           # two scalars: their own step, no weight decay (it would pull s to 0)
            groups.append({"params": weights, "lr": config.weighting_lr, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.order = torch.zeros(0, dtype=torch.long)     # this epoch's batch order, consumed from `pos`
        self.pos = 0
        self.steps = 0
        self.epoch = 0
        self.best = math.inf
        self.best_epoch = -1
        self.best_state: dict = {}
        self.bad_epochs = 0
        self.stopped = False
        self.out_of_time = False
        self.points_source: str | None = None             # reprojection: depth | triangulated | virtual plane
        self.seconds = 0.0                                # training time so far (resumes count on)
        self.planned_epochs = config.epochs               # the cosine schedule's length (fit: budget)
        self.history: list[dict] = []

    # batches ------------------------------------------------------------
    @property
    def anchors_per_batch(self) -> int:
        b = min(self.config.batch_size, len(self.train_idx))
        return max(1, b // 2) if self.variant == "mapnet" else b

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_idx) / self.anchors_per_batch)

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frame indices of the next batch (and MapNet's pairs as positions in it)."""
        if self.pos >= len(self.order):
            self.order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.generator)]
            self.pos = 0
        anchors = self.order[self.pos:self.pos + self.anchors_per_batch]
        self.pos += self.anchors_per_batch
        if self.variant == "posenet":
            return anchors, None
        pick = torch.randint(self.neighbours.shape[1], (len(anchors),), generator=self.generator)
        partners = self.neighbours[anchors, pick]
        n = len(anchors)
        return torch.cat([anchors, partners]), torch.stack([torch.arange(n), torch.arange(n, 2 * n)])

    # one step -----------------------------------------------------------
    @property
    def phase_loss(self) -> str:
        """The loss of the current epoch (reprojection after its hand-tuned pretraining)."""
        if self.config.loss == "reprojection" and self.epoch < self.config.pretrain_epochs:
            return "hand-tuned"
        return self.config.loss

    def loss(self, idx: torch.Tensor, pairs: torch.Tensor | None) -> torch.Tensor:
        images = self.data.images[idx].float() / 255
        intrinsics = self.data.intrinsics[idx]
        if self.config.augment:
            images, intrinsics = augment(images, intrinsics, self.generator)
        out = self.model.raw(images)
        pos_err, rot_err = pose_errors(out, self.positions[idx], self.data.quaternions[idx])
        kind = self.phase_loss
        if kind == "hand-tuned":
            loss = hand_tuned_loss(pos_err, rot_err, self.config.beta)
        elif kind == "learned":
            loss = self.weighting(pos_err, rot_err)
        else:
            centres, quats = self.model.to_world(out)
            loss = reprojection_loss(centres, quats, self.data.centres[idx], self.data.quaternions[idx],
                                     self.data.points[idx], intrinsics, self.config.reprojection_clamp)
        if pairs is not None and self.config.mapnet_weight > 0:
            loss = loss + self.config.mapnet_weight * self._relative_loss(out, idx, pairs, kind)
        return loss

    def _relative_loss(self, out, idx, pairs, kind) -> torch.Tensor:
        """MapNet: errors of the relative poses between paired frames (normalised units)."""
        i, j = pairs
        dc, dq = relative_poses(out[:, :3], canonical_quaternion(out[:, 3:7]), i, j)
        dc_true, dq_true = relative_poses(self.positions[idx], self.data.quaternions[idx], i, j)
        pos_err, rot_err = (dc - dc_true).norm(dim=-1), quaternion_distance(dq, dq_true)
        if kind == "learned":
            # MapNet's h(.) with the same s_c, s_r as the absolute terms: weights of their
            # own grew on the tiny errors between near frames and pulled every prediction
            # to the mean position (10k cover room: 3.27 m, the mean pose's error)
            return self.weighting(pos_err, rot_err)
        return hand_tuned_loss(pos_err, rot_err, self.config.beta)

    def network_lr(self) -> float:
        """The network's step size for the current step: the config's lr, or with the
        cosine schedule its decay to 0 over the planned epochs (`epochs`, or with a time
        budget those that fit in it; a function of the step count, so a resumed training
        continues it exactly). The learned weights keep their own."""
        if self.config.lr_schedule == "constant":
            return self.config.lr
        total = self.planned_epochs * self.steps_per_epoch
        return 0.5 * self.config.lr * (1 + math.cos(math.pi * min(self.steps, total) / total))

    def step(self) -> float:
        self.model.train()
        if 0 < self.epoch == self.config.pretrain_epochs and self.steps == self.epoch * self.steps_per_epoch:
            # the reprojection loss begins: fresh Adam moments. The pretraining's second
            # moments are for gradients ~100x smaller, and with them the first steps on
            # pixel errors are several times lr (path room: held-out error 0.4 -> 4 m)
            self.optimizer.state.clear()
        idx, pairs = self._next_batch()
        loss = self.loss(idx, pairs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss = loss.detach()
        self.optimizer.param_groups[0]["lr"] = self.network_lr()
        self.optimizer.step()
        self.steps += 1
        return loss.item()

    # epochs, validation, early stopping ---------------------------------------
    def evaluate(self, idx: torch.Tensor, batch: int = 32) -> dict:
        """Errors of the current network on frames `idx` (eval mode, no augmentation):
        the score (mean normalised centre error + mean rotation angle in radians) and
        medians in world units / degrees."""
        self.model.eval()
        with torch.no_grad():
            outs = [self.model.raw(self.data.images[idx[k:k + batch]].float() / 255)
                    for k in range(0, len(idx), batch)]
        out = torch.cat(outs)
        pos_err, _ = pose_errors(out, self.positions[idx], self.data.quaternions[idx])
        q = canonical_quaternion(out[:, 3:7])
        angle = 2 * torch.arccos((q * self.data.quaternions[idx]).sum(-1).abs().clamp(max=1))
        return {"score": float(pos_err.mean() + angle.mean()),
                "median_centre_error": float(pos_err.median() * self.model.position_scale),
                "median_rotation_deg": float(torch.rad2deg(angle.median()))}

    def learned_weights(self) -> dict | None:
        """The learned loss's s_c, s_r now, and the hand-tuned β they amount to: the
        rotation term's weight over the position term's, exp(s_c - s_r)."""
        if self.weighting is None:
            return None
        s_c, s_r = float(self.weighting.s_c.detach()), float(self.weighting.s_r.detach())
        return {"s_c": s_c, "s_r": s_r, "effective_beta": math.exp(s_c - s_r)}

    def end_epoch(self, train_loss: float) -> None:
        record = {"epoch": self.epoch, "loss": train_loss, "phase": self.phase_loss}
        pretraining = self.epoch < self.config.pretrain_epochs
        self.epoch += 1
        if len(self.val_idx):
            val = self.evaluate(self.val_idx)
            record["validation"] = val
            # the best held-out epoch is kept, pretraining included (the reprojection loss
            # can drift off from a poor start: a pose far away sees every point in front);
            # patience counts only epochs of the final loss
            if val["score"] < self.best:
                self.best, self.best_epoch = val["score"], self.epoch - 1
                self.best_state = copy.deepcopy(self.model.state_dict())
                self.bad_epochs = 0
            elif not pretraining:
                self.bad_epochs += 1
                self.stopped = self.bad_epochs >= self.config.patience
        self.history.append(record)

    def run_epoch(self) -> float:
        losses = [self.step() for _ in range(self.steps_per_epoch)]
        train_loss = float(np.mean(losses))
        self.end_epoch(train_loss)
        return train_loss

    def fit(self, checkpoint: Path | None = None, progress: bool = True) -> None:
        """Train until `epochs` or early stopping, saving `checkpoint` after each epoch;
        then keep the weights of the best held-out epoch."""
        from ..progress import progress_bar
        bar = progress_bar(range(self.epoch, self.config.epochs), f"training {self.variant}", progress)
        budget = 60 * self.config.max_minutes
        for _ in bar:
            if self.stopped:
                break
            # the next epoch is assumed as long as the longest so far
            longest = max((r.get("seconds", 0.0) for r in self.history), default=0.0)
            if budget and self.seconds + longest > budget:
                self.out_of_time = True
                break
            if budget and longest:       # the schedule ends with the last epoch that fits
                self.planned_epochs = epochs_that_fit(self.epoch, self.config.epochs, self.seconds, longest, budget)
            t = time.perf_counter()
            loss = self.run_epoch()
            elapsed = time.perf_counter() - t
            self.seconds += elapsed
            self.history[-1]["seconds"] = elapsed
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.4f}")
            if checkpoint is not None:
                self.save(checkpoint)
        if self.best_state:
            self.model.load_state_dict(self.best_state)
        self.model.eval()

    # checkpoints --------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "weighting": self.weighting.state_dict() if self.weighting else {},
                "generator": self.generator.get_state(), "order": self.order, "pos": self.pos,
                "steps": self.steps, "epoch": self.epoch, "best": self.best, "best_epoch": self.best_epoch,
                "best_state": self.best_state, "bad_epochs": self.bad_epochs, "stopped": self.stopped,
                "seconds": self.seconds, "history": json.dumps(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.weighting is not None:
            self.weighting.load_state_dict(state["weighting"])
        self.generator.set_state(state["generator"])
        self.order, self.pos, self.steps, self.epoch = state["order"], state["pos"], state["steps"], state["epoch"]
        self.best, self.best_epoch, self.best_state = state["best"], state["best_epoch"], state["best_state"]
        self.bad_epochs, self.stopped = state["bad_epochs"], state["stopped"]
        self.seconds = float(state.get("seconds", 0.0))
        self.history = json.loads(state["history"])

    def save(self, path: Path, fingerprint: str = "") -> None:
        """Write the checkpoint atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({**self.state_dict(), "fingerprint": fingerprint or self.fingerprint}, tmp)
        os.replace(tmp, path)

    def load(self, path: Path) -> bool:
        """Resume from `path` if it is a checkpoint of this same training (config,
        variant, frames); returns whether it was."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return False
        except Exception as e:          # torch raises several types for a bad file
            raise VlocError(f"cannot read training checkpoint {path}: {str(e).splitlines()[0]} "
                            "(delete it to start again)") from None
        if state.get("fingerprint") != self.fingerprint:
            return False
        self.load_state_dict(state)
        return True

    @property
    def fingerprint(self) -> str:
        text = json.dumps({"config": self.config.to_dict(), "variant": self.variant, "frames": self.data.names,
                           "train": self.train_idx.tolist()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def train_pose_regressor(frames, config: PoseRegressionConfig, variant: str = "posenet",
                         checkpoint: Path | None = None, progress: bool = True) -> Trainer:
    """Read the frames (with poses), hold out every Kth, train (resuming `checkpoint`
    when it belongs to this training) and return the trainer with the best weights."""
    from .data import input_size, load_pose_data
    frames = [f for f in frames if f.has_pose]
    if len(frames) < 2:
        raise VlocError(f"pose regression needs at least 2 mapping images with poses, got {len(frames)}")
    centres = np.stack([f.cam_from_world.center for f in frames])
    spread = float(np.sqrt(((centres - centres.mean(0)) ** 2).sum(1).mean()))
    points = config.points_per_frame if config.loss == "reprojection" else 0
    scene_points, source = None, "depth"
    if points and not all(f.has_depth for f in frames):
        scene_points, source = _triangulated_or_none(frames, progress)
    data = load_pose_data(frames, input_size(frames[0].camera, config.image_size), config.image_size, points,
                          virtual_depth=max(spread, 1e-3), progress=progress, scene_points=scene_points)
    train_idx, val_idx = holdout_split(len(frames), config.holdout_every)
    model = build_model(config, data.centres[train_idx])
    trainer = Trainer(model, data, config, variant, train_idx, val_idx)
    trainer.points_source = source if points else None
    if checkpoint is not None:
        trainer.load(checkpoint)
    trainer.fit(checkpoint, progress)
    return trainer


def _triangulated_or_none(frames, progress: bool) -> tuple[dict | None, str]:
    """The reprojection loss's points for frames without depth: triangulated from their
    poses; where that fails (too few matches), a plane at the scene's spread, said so."""
    from ..errors import MapError
    from .data import triangulated_points
    try:
        return triangulated_points(frames, progress), "triangulated"
    except (MapError, VlocError) as e:
        import warnings
        warnings.warn(f"reprojection loss: no triangulated points ({e}); using a virtual plane", stacklevel=2)
        return None, "virtual plane"
