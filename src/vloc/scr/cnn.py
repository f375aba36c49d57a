"""A CNN scene coordinate regressor after ACE (Brachmann et al. CVPR 2023): a frozen
encoder (kornia's ALIKED dense map with packaged weights, averaged over 8 x 8 pixel
cells: 1/8 resolution) and a small regression head of 1x1 layers predicting each
cell's scene coordinate relative to the scene's mean (in units of its spread).

The encoder runs once per mapping image and pass (the first as is, the others
rescaled and colour-jittered) and the cells go to a buffer with their targets; the
head alone is trained on shuffled batches of it:
- a cell with depth: the distance to its depth-derived scene coordinate (DSAC*),
- a cell of a frame without depth: ACE's reprojection error (tanh-clamped), and,
  where the prediction is behind or too near the camera, the distance to the point
  on the cell's ray at `default_depth`.
Both are in units of the scene's spread: pixels become lateral metres at the
predicted depth. A cell's pixel is the one at its centre, (8j + 4, 8i + 4), in
training and at query time. The map is the head's weights (fp16).

Heads. ACE's MLP (`mlp`) needs an encoder trained for it (ACE's, on 100 scenes) and
long training; on ALIKED's matching features it did not generalise on a CPU budget:
on the test room (40 frames, 128 x 96) 0.1 % of the query cells within 10 cm after
2000 steps (12 % of the training cells), at 320 x 240 with 100 frames 0.9 % after
1500 steps, while the nearest mapping cell in feature space was within 10 cm for 37 %
and 82 % of them. The default head (`prototypes`) builds on that: cosine similarity
to K prototype features, a softmax over the k best, their coordinates averaged; it
starts as a soft nearest-neighbour regressor over K buffer cells and training moves
prototypes, coordinates and temperature (on the test room: 29 % -> 37 % within 10 cm).
The map is then K x (C + 3) fp16 weights (16384 prototypes: 4.3 MB). A training step
predicts each cell from its candidate keys (chosen by a full key search over the
buffer at the start and again after 1/2 and 3/4 of the steps), not from all K.

On the benchmark room (benchmarks/scr.py: 320 x 240, 300 mapping frames, 50 RGB-D
queries) the untrained soft nearest neighbour already put 98 % of the queries within
5 cm / 5° (median 1.07 cm); 1500 coordinate steps gave 100 % (0.99 cm; 0.86-0.94 cm in
development runs) and raised the colour-only (PnP) recall at 5 cm from 76 % to 86-90 %.
ALIKED-t16 instead of n16 (half the encoder time; development run): 100 % (1.01 cm)
with depth, 72 % with PnP."""
from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")    # before torch loads libgomp: idle threads sleep
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from .._libs import cv2  # noqa: E402
from ..datasets import Frame  # noqa: E402
from ..errors import DataError, MapError, VlocError  # noqa: E402
from ..progress import progress_bar  # noqa: E402
from .config import ScrConfig  # noqa: E402
from .forest import RGBDFrame, camera_points, read_rgbd, working_camera  # noqa: E402

CELL = 8
FILE_VERSION = 1


# the network ------------------------------------------------------------------------
class Head(nn.Module):
    """Cell features (..., C) -> scene coordinates (..., 3) = mean + scale * out, where
    `out` is the network's; mean and spread of the scene are buffers (fp32 in the map).
    `candidates`: for a prototype head, precomputed key indices per cell (training)."""

    kind = ""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, features: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        return self.mean + self.scale * self.out(features.float(), candidates)


class MlpHead(Head):
    """ACE's head: 1x1 layers (Linear on the channel axis) with ReLU, the middle ones
    residual; the last starts small, so training starts at the scene's mean."""

    kind = "mlp"

    def __init__(self, channels: int, width: int = 256, layers: int = 3):
        super().__init__()
        self.inp = nn.Linear(channels, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(layers - 1))
        self.last = nn.Linear(width, 3)
        with torch.no_grad():
            self.last.weight.mul_(0.01)
            self.last.bias.zero_()

    def out(self, f: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        x = F.relu(self.inp(f * self.inp.in_features ** 0.5))     # unit-norm features: O(1) entries
        for layer in self.hidden:
            x = x + F.relu(layer(x))
        return self.last(x)

    def architecture(self) -> dict:
        return {"kind": self.kind, "channels": self.inp.in_features, "width": self.inp.out_features,
                "layers": 1 + len(self.hidden)}


def _bf16_products() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 / AMX): then the K-way key
    search runs in bf16, ~2x faster than fp32 (elsewhere bf16 is emulated and slower)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


class PrototypeHead(Head):
    """A prototype layer: a 1x1 convolution with K unit-norm kernels (keys) gives each
    cell's cosine similarities, a softmax over the k most similar at a learned
    temperature weighs a second 1x1 convolution's columns (values: coordinates relative
    to the mean, in units of the spread). Initialised with K buffer cells and their
    targets it starts as a soft nearest-neighbour regressor; training moves keys,
    values and the temperature (only the top k get gradients).

    The K-way product only chooses keys (`search`, no gradient, bf16 where the CPU
    multiplies it natively: 46 instead of 94 ms of one core for a 320 x 240 query's
    1200 cells and 16384 keys): the `SEARCH` best are rescored exactly in fp32 and the
    top k kept. In training the keys a buffer cell chooses from are found by a search
    over the whole buffer now and then (`candidates`), so a step costs a gather, not
    the K-way product."""

    kind = "prototypes"
    SEARCH = 8

    def __init__(self, channels: int, prototypes: int, top_k: int = 4, temperature: float = 0.02):
        super().__init__()
        self.keys = nn.Parameter(torch.randn(prototypes, channels))
        self.values = nn.Parameter(torch.zeros(prototypes, 3))
        self.log_scale = nn.Parameter(torch.tensor(-math.log(temperature)))
        self.top_k = min(top_k, prototypes)
        self.key_frames: torch.Tensor | None = None      # training only: the mapping frame of each key
        self.candidates: torch.Tensor | None = None      # training only: keys per buffer row (`candidates`)

    @torch.no_grad()
    def search(self, f: torch.Tensor, count: int, frames: torch.Tensor | None = None, exclude: int = -1,
               chunk: int = 4096) -> torch.Tensor:
        """(n, count) indices of the keys most similar to features f (n, C), in chunks.
        With `frames` (n,) (the cells' mapping frames) and `exclude` >= 0, keys from
        frames within `exclude` of a cell's own are never chosen for it."""
        count = min(count, len(self.keys))
        dtype = torch.bfloat16 if _bf16_products() else torch.float32
        keys = F.normalize(self.keys.detach().float(), dim=-1).to(dtype)
        out = []
        for i in range(0, len(f), chunk):
            sim = F.normalize(f[i:i + chunk].float(), dim=-1).to(dtype) @ keys.T
            if frames is not None and exclude >= 0:
                rows = frames[i:i + chunk]
                for g in rows.unique().tolist():
                    near = torch.nonzero((self.key_frames - g).abs() <= exclude)[:, 0]
                    if len(near):
                        block = torch.nonzero(rows == g)[:, 0]
                        sim[block[:, None], near[None, :]] = -torch.inf
            out.append(sim.topk(count, dim=-1).indices)
        return torch.cat(out) if out else torch.zeros(0, count, dtype=torch.long)

    def out(self, f: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        f = F.normalize(f, dim=-1)
        if candidates is None:
            candidates = self.search(f, max(self.SEARCH, self.top_k))
        candidates = candidates.long()
        keys = F.embedding(candidates, F.normalize(self.keys, dim=-1))     # (n, c, C)
        sim = torch.bmm(keys, f[:, :, None])[..., 0]                       # (n, c), differentiable
        with torch.no_grad():
            top = sim.topk(min(self.top_k, sim.shape[-1]), dim=-1).indices
        weights = torch.softmax(sim.gather(-1, top) * self.log_scale.exp(), dim=-1)
        return (weights[..., None] * self.values[candidates.gather(-1, top)]).sum(-2)

    def architecture(self) -> dict:
        return {"kind": self.kind, "channels": self.keys.shape[1], "prototypes": self.keys.shape[0],
                "top_k": self.top_k}


def make_head(architecture: dict) -> Head:
    a = architecture
    if a.get("kind") == "mlp":
        return MlpHead(int(a["channels"]), int(a["width"]), int(a["layers"]))
    if a.get("kind") == "prototypes":
        return PrototypeHead(int(a["channels"]), int(a["prototypes"]), int(a["top_k"]))
    raise MapError(f"unknown scr head {a.get('kind')!r}")


def new_head(buf: PixelBuffer, config: ScrConfig) -> Head:
    """A head for the buffer's features, with the scene's mean and spread, initialised
    from the config's seed (torch's global generator untouched): prototypes are
    random cells of the first pass with their targets (without depth: the point on the
    ray at `default_depth`)."""
    channels = buf.features.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.head == "mlp":
            head: Head = MlpHead(channels, config.head_width, config.head_layers)
        else:
            first = int(buf.starts[len(buf.has_depth)])          # the first pass's rows
            rows = torch.randperm(first)[:config.prototypes]
            head = PrototypeHead(channels, len(rows), config.top_k, config.temperature)
    mean, scale = buf.normalisation(config.default_depth)
    with torch.no_grad():
        head.mean.copy_(mean)
        head.scale.copy_(scale)
        if isinstance(head, PrototypeHead):
            head.keys.copy_(buf.features[rows].float())
            head.values.copy_((buf.points(rows, config.default_depth) - mean) / scale)
        head.key_frames = buf.frame[rows].clone()
    return head


def save_head(head: Head, path) -> None:
    """A tensor-only state dict: weights in fp16, the scene's mean and scale in fp32."""
    state = {k: v if k in ("mean", "scale") else v.half() for k, v in head.state_dict().items()}
    torch.save({**state, "version": torch.tensor(FILE_VERSION)}, path)


def load_head(path, architecture: dict) -> Head:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        version = int(state.pop("version", torch.tensor(-1)))
        if version != FILE_VERSION:
            raise MapError(f"scr head {path} has file version {version}, this vloc reads {FILE_VERSION}: "
                           "rebuild the map")
        head = make_head(architecture)
        head.load_state_dict({k: v.float() for k, v in state.items()})
    except (OSError, RuntimeError, KeyError, ValueError, AttributeError, pickle.UnpicklingError) as e:
        raise MapError(f"cannot read scr head {path}: {str(e).splitlines()[0]}") from None
    return head.eval()


def encode(colour: np.ndarray, encoder: str) -> np.ndarray:
    """(h, w, C) float32 features of the image's 8 x 8 cells (h = ceil(H / 8)): those of
    `retrieval.dense.dense_features` at the image's size, in half its time (cnn_encoder)."""
    from .cnn_encoder import dense_cells
    return dense_cells(colour, encoder, CELL)


def cell_pixels(cells: tuple[int, int], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Integer (x, y) of each cell's pixel, row-major over (h, w) cells of an image of
    `shape` (H, W, ...): the cell's centre pixel, inside the image."""
    h, w = cells
    y, x = np.meshgrid(np.minimum(CELL * np.arange(h) + CELL // 2, shape[0] - 1),
                       np.minimum(CELL * np.arange(w) + CELL // 2, shape[1] - 1), indexing="ij")
    return x.ravel(), y.ravel()


def predict(head: Head, encoder: str, colour: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scene coordinates (n, 3) of an image's cells and their pixels x, y (n,)."""
    feats = encode(colour, encoder)
    x, y = cell_pixels(feats.shape[:2], colour.shape)
    with torch.inference_mode():
        coords = head(torch.from_numpy(feats.reshape(-1, feats.shape[2])))
    return coords.double().numpy(), x, y


# the buffer -------------------------------------------------------------------------
@dataclass
class PixelBuffer:
    """Cells of the mapping images (one block of rows per pass and frame) with their
    targets, and per frame its pose and focal length."""

    features: torch.Tensor           # (n, C) float16
    rays: torch.Tensor               # (n, 2) normalised image coordinates of the cell's pixel
    targets: torch.Tensor            # (n, 3) scene coordinate from depth; NaN: none (reprojection)
    frame: torch.Tensor              # (n,) int64 mapping frame of each row
    starts: np.ndarray               # (m + 1,) rows of buffer image k: starts[k]:starts[k + 1]
    cam_from_world: torch.Tensor     # (F, 3, 4)
    focal: torch.Tensor              # (F,) pixels at the working size
    has_depth: np.ndarray            # (F,) bool
    # the training candidates of a prototype head's initial keys (int32, see `candidates`), what they are for
    candidates: torch.Tensor | None = None
    candidates_for: tuple | None = None

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def images(self) -> int:
        return len(self.starts) - 1

    def rows(self, k: int) -> slice:
        return slice(int(self.starts[k]), int(self.starts[k + 1]))

    def points(self, rows: torch.Tensor, default_depth: float) -> torch.Tensor:
        """The rows' targets; without depth the point on the cell's ray at `default_depth`."""
        P = self.cam_from_world[self.frame[rows]]
        ray = torch.cat([self.rays[rows], torch.ones(len(rows), 1)], 1) * default_depth
        on_ray = ((ray - P[..., 3])[:, None, :] @ P[..., :3])[:, 0]           # R^T (x - t)
        t = self.targets[rows]
        return torch.where(torch.isfinite(t), t, on_ray)

    def normalisation(self, default_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The scene's mean and spread (RMS distance to the mean): of the depth
        targets, else of the points at `default_depth` in front of the cameras."""
        pts = self.targets[torch.isfinite(self.targets[:, 0])]
        if not len(pts):
            R, t = self.cam_from_world[..., :3], self.cam_from_world[..., 3]
            centres = -(R.transpose(1, 2) @ t[..., None])[..., 0]
            pts = centres + default_depth * R[:, 2]                  # optical axes in world
        mean = pts.mean(0)
        return mean, (pts - mean).norm(dim=1).pow(2).mean().sqrt().clamp_min(1e-3)


def read_mapping_frame(frame: Frame, config: ScrConfig) -> RGBDFrame:
    """A posed mapping frame at the working size; depth None where it has none."""
    from ..imageio import read_rgb
    if frame.has_depth:
        return read_rgbd(frame, config.max_size, config.max_depth)
    colour = read_rgb(frame.image_path, config.max_size, f"frame {frame.name}", frame.camera)
    return RGBDFrame(colour, None, working_camera(frame.camera, colour.shape))


def check_mapping_frames(frames: list[Frame]) -> None:
    if not frames:
        raise DataError("scene coordinate regression needs at least one posed mapping frame")
    unposed = [f for f in frames if not f.has_pose]
    if unposed:
        f = unposed[0]
        raise DataError(f"mapping frame {f.name} has no pose{'' if f.has_depth else ' and no depth'} "
                        f"({len(unposed)} of {len(frames)} without a pose): scene coordinate regression trains "
                        "on posed frames (targets from depth, else a reprojection loss)")


def _augment(colour: np.ndarray, config: ScrConfig, rng) -> tuple[np.ndarray, float]:
    """The image rescaled by a factor in [1/s, s] (at least 2 cells a side), brightness
    and contrast jittered; returns it and the factor."""
    s = float(np.exp(rng.uniform(-1, 1) * math.log(config.augment_scale)))
    h, w = colour.shape[:2]
    size = (max(2 * CELL, round(w * s)), max(2 * CELL, round(h * s)))
    out = cv2.resize(colour, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    return np.clip(out.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8), size[0] / w


def build_buffer(frames: list[Frame], config: ScrConfig, progress: bool = True) -> PixelBuffer:
    """Run the encoder over the posed mapping frames `config.buffer_passes` times."""
    check_mapping_frames(frames)
    images = [read_mapping_frame(f, config) for f in progress_bar(frames, "reading mapping frames", progress)]
    rng = np.random.default_rng([config.seed, 1])
    feats, rays, targets, frame_ids, starts = [], [], [], [], [0]
    jobs = [(p, i) for p in range(config.buffer_passes) for i in range(len(frames))]
    for p, i in progress_bar(jobs, f"encoding ({config.encoder})", progress):
        img, frame = images[i], frames[i]
        colour, s = (img.colour, 1.0) if p == 0 else _augment(img.colour, config, rng)
        f = encode(colour, config.encoder)
        cx, cy = cell_pixels(f.shape[:2], colour.shape)
        # the pixel of the frame's working image nearest to the cell's pixel
        x = np.clip(np.floor((cx + 0.5) / s), 0, img.colour.shape[1] - 1).astype(np.int64)
        y = np.clip(np.floor((cy + 0.5) / s), 0, img.colour.shape[0] - 1).astype(np.int64)
        f = f.reshape(-1, f.shape[2])
        if img.depth is not None:
            keep = img.depth[y, x] > 0                              # cells without depth teach nothing
            x, y, f = x[keep], y[keep], f[keep]
            world = frame.cam_from_world.inverse().transform(camera_points(img.depth, img.camera, x, y))
        else:
            world = np.full((len(x), 3), np.nan)
        feats.append(torch.from_numpy(f).half())
        rays.append(img.camera.unproject(np.c_[x + 0.5, y + 0.5]))
        targets.append(world)
        frame_ids.append(np.full(len(x), i))
        starts.append(starts[-1] + len(x))
    if starts[-1] == 0:
        raise DataError("no mapping frame has a pixel with valid depth: the network cannot be trained")
    poses = np.stack([np.c_[f.cam_from_world.R, f.cam_from_world.t] for f in frames])
    focal = np.array([(im.camera.fx + im.camera.fy) / 2 for im in images])
    return PixelBuffer(torch.cat(feats), torch.from_numpy(np.concatenate(rays)).float(),
                       torch.from_numpy(np.concatenate(targets)).float(),
                       torch.from_numpy(np.concatenate(frame_ids)), np.array(starts),
                       torch.from_numpy(poses).float(), torch.from_numpy(focal).float(),
                       np.array([im.depth is not None for im in images]))


# the coordinate loss ----------------------------------------------------------------
def coordinate_loss(pred: torch.Tensor, rows: torch.Tensor, buf: PixelBuffer, config: ScrConfig,
                    scale: torch.Tensor) -> torch.Tensor:
    """Mean loss of predictions (n, 3) for buffer rows (n,), in units of `scale`."""
    target = buf.targets[rows]
    depth = torch.isfinite(target[:, 0])
    loss = torch.zeros(len(rows))
    if depth.any():
        loss[depth] = (pred[depth] - target[depth]).norm(dim=1) / scale
    rgb = ~depth
    if rgb.any():
        frame = buf.frame[rows[rgb]]
        P = buf.cam_from_world[frame]
        xc = (P[..., :3] @ pred[rgb, :, None])[..., 0] + P[..., 3]
        ray = torch.cat([buf.rays[rows[rgb]], torch.ones(int(rgb.sum()), 1)], 1)
        z = xc[:, 2]
        f = buf.focal[frame]
        err = f * (xc[:, :2] / z.clamp_min(config.min_depth)[:, None] - ray[:, :2]).norm(dim=1)
        valid = (z > config.min_depth) & (err < 1000)
        clamp = config.reprojection_clamp
        lateral = clamp * torch.tanh(err / clamp) * z.detach() / f           # pixels -> metres at depth z
        to_ray = (xc - config.default_depth * ray).norm(dim=1)
        loss[rgb] = torch.where(valid, lateral, to_ray) / scale
    return loss.mean()


# training ---------------------------------------------------------------------------
def candidates(head: Head, buf: PixelBuffer, config: ScrConfig, progress: bool = False) -> torch.Tensor | None:
    """A prototype head's keys per buffer row for training (n, `config.candidates`)
    int32: the most similar by the head's current keys (with `exclude_frames` >= 0,
    none of the row's own frame and its neighbours); None for other heads. Those of a
    head's initial keys are kept in the buffer: every head that `new_head` makes from
    the same config has the same ones. Without the refreshes a head trained with the
    reprojection loss (test room) predicted differently through the full search of a
    query than through its stale candidates (median reprojection error 2.0 px against
    0.47 px; 0.67 px with 2 refreshes). Excluding a row's own frame did not help the
    queries (benchmark room, candidates never refreshed: median RGB-D error 1.04 cm with
    exclude_frames 0, 1.16 cm with 3, 0.86 cm without; PnP recall at 5 cm 82 / 60 / 86 %)."""
    if not isinstance(head, PrototypeHead):
        return None
    what = (config.candidates, config.exclude_frames, tuple(head.keys.shape), float(head.keys.detach().sum()))
    if buf.candidates is not None and buf.candidates_for == what:
        return buf.candidates
    if config.exclude_frames >= 0 and head.key_frames is None:
        raise VlocError("excluding frames needs the head's key frames (a head made by new_head)")
    step = 16384
    cand = torch.cat([head.search(buf.features[i:i + step], config.candidates, buf.frame[i:i + step],
                                  config.exclude_frames).int()
                      for i in progress_bar(range(0, len(buf), step), "choosing prototype candidates", progress)])
    if buf.candidates is None:
        buf.candidates, buf.candidates_for = cand, what
    return cand


def head_inputs(head: Head, buf: PixelBuffer, rows) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The features of buffer rows and the head's training candidates for them (if any)."""
    cand = getattr(head, "candidates", None)
    return buf.features[rows], None if cand is None else cand[rows]


def train_head(buf: PixelBuffer, config: ScrConfig, head: Head | None = None,
               progress: bool = True) -> tuple[Head, dict]:
    """Adam on shuffled batches of the buffer (an epoch is one pass over it), cosine
    decay of the step; torch's thread setting is used as is. A prototype head predicts
    each row from its candidates (`candidates`, chosen again `candidate_refreshes`
    times: after 1/2, 3/4, ... of the steps, as keys move), so a step costs a gather, not
    the K-way key product (measured at 320 x 240, 2048 cells, 16384 prototypes, one
    core: 40-50 ms of CPU per step instead of 220 ms). Returns the head and a history:
    mean loss per 5 % of the steps; wall and process CPU seconds, in all, of choosing
    the candidates and of the steps."""
    t0, c0 = time.perf_counter(), time.process_time()
    head = new_head(buf, config) if head is None else head
    if isinstance(head, PrototypeHead):
        head.candidates = candidates(head, buf, config, progress)
    refresh = {config.steps - (config.steps >> i) for i in range(1, config.candidate_refreshes + 1)} - {0}
    choosing = [time.perf_counter() - t0, time.process_time() - c0]
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, config.steps), eta_min=config.lr / 20)
    gen = torch.Generator().manual_seed(config.seed)
    order, pos = torch.zeros(0, dtype=torch.long), 0
    every = max(1, config.steps // 20)
    history, running = [], []
    bar = progress_bar(range(config.steps), "training the scr head", progress)
    for step in bar:
        if pos + config.batch_size > len(order):
            order, pos = torch.randperm(len(buf), generator=gen), 0
        rows = order[pos:pos + config.batch_size]
        pos += config.batch_size
        if step in refresh and isinstance(head, PrototypeHead):
            w, c = time.perf_counter(), time.process_time()
            head.candidates = candidates(head, buf, config)
            choosing[0] += time.perf_counter() - w
            choosing[1] += time.process_time() - c
        loss = coordinate_loss(head(*head_inputs(head, buf, rows)), rows, buf, config, head.scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if (step + 1) % every == 0 or step + 1 == config.steps:
            history.append({"step": step + 1, "loss": float(np.mean(running))})
            running = []
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
    head.eval()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return head, {"coordinate_loss": history, "seconds": wall, "cpu_seconds": cpu,
                  "candidate_seconds": choosing[0], "candidate_cpu_seconds": choosing[1],
                  "steps_seconds": wall - choosing[0], "steps_cpu_seconds": cpu - choosing[1]}

