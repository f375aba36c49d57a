"""A small projection head trained on the map's own images (no pretrained retrieval
weights exist offline): a residual MLP on the pooled vectors, y = L2(x + W2 gelu(W1 x)),
with W2 zero-initialised so that the untrained head is the identity (after L2).

Training is contrastive (InfoNCE with in-batch negatives): the anchor is a random
crop of a mapping image's dense map, pooled; its positive another crop of the same
image or of a mapping image that sees the same part of the scene, judged from the
camera poses (centres close and optical axes within `max_angle`). Other images in
the batch are negatives, except the anchor's own positives, which are left out.
Seeded and deterministic on the CPU. Saved as a plain torch state dict (tensors only)
and read back with weights_only=True (no pickle code runs)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import MapError, VlocError


@dataclass(frozen=True)
class HeadConfig:
    hidden: int = 256
    epochs: int = 30
    batch: int = 64
    lr: float = 3e-4              # 1e-3 raised the loss of 2048-D NetVLAD heads on some maps
    weight_decay: float = 1e-4
    temperature: float = 0.05
    max_angle: float = 30.0      # positives: optical axes within this angle (degrees) ...
    radius: float = 0.0          # ... and centres within this distance (0: 2x the median nearest-centre distance)
    seed: int = 0

    def __post_init__(self):
        if self.hidden < 1 or self.epochs < 0 or self.batch < 2 or not self.lr > 0 or not self.temperature > 0:
            raise VlocError(f"bad head config {self}: need hidden >= 1, epochs >= 0, batch >= 2, lr > 0, "
                            "temperature > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def _torch():
    import torch
    return torch


def make_head(dim: int, hidden: int):
    """The residual MLP head (a torch module), identity at initialisation."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class ProjectionHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

        def forward(self, x):
            return F.normalize(x + self.fc2(F.gelu(self.fc1(x))), dim=-1)

    return ProjectionHead()


def pose_positives(poses, max_angle: float = 30.0, radius: float = 0.0) -> list[np.ndarray]:
    """Per image, the indices of the other images that see the same part of the scene:
    camera centres within `radius` (0: twice the median distance from a camera to its
    nearest other camera) and optical axes within `max_angle` degrees. Found with a
    k-d tree (no n x n matrix)."""
    from scipy.spatial import cKDTree
    if len(poses) < 2:
        return [np.zeros(0, np.int64) for _ in poses]
    centres = np.array([p.center for p in poses], np.float64)
    axes = np.array([p.R[2] for p in poses], np.float64)           # optical axes in the world
    tree = cKDTree(centres)
    if radius <= 0:
        d, _ = tree.query(centres, k=2)
        radius = 2 * float(np.median(d[:, 1]))
    cos_max = np.cos(np.radians(max_angle))
    out = []
    for i, near in enumerate(tree.query_ball_point(centres, r=max(radius, 1e-12))):
        near = np.array([j for j in near if j != i], np.int64)
        out.append(np.sort(near[axes[near] @ axes[i] >= cos_max]) if len(near) else near)
    return out


@dataclass
class HeadTraining:
    head: object                 # the trained torch module (eval mode)
    initial_loss: float          # on a fixed seeded set of pairs, before training
    final_loss: float            # the same pairs after training
    epoch_losses: list[float]


def _pairs(views: np.ndarray, positives, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per image (in random order): anchor view, positive image, positive view."""
    n, v = views.shape[:2]
    order = rng.permutation(n)
    pos = np.array([rng.choice(np.r_[i, positives[i]]) for i in order], np.int64)
    return order, rng.integers(v, size=n), pos, rng.integers(v, size=n)


def _batch_loss(head, x, positives, anchors, a_view, pos, p_view, temperature):
    torch = _torch()
    za = head(x[anchors, a_view])
    zp = head(x[pos, p_view])
    logits = za @ zp.T / temperature
    # another column that is also a positive of the anchor is neither the target nor a negative
    same = np.array([[j != i and (pos[j] == anchors[i] or pos[j] in positives[anchors[i]])
                      for j in range(len(anchors))] for i in range(len(anchors))])
    logits = logits.masked_fill(torch.from_numpy(same), float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(anchors)))


def train_head(views: np.ndarray, positives: list[np.ndarray], config: HeadConfig = HeadConfig()) -> HeadTraining:
    """Train a head on `views` (n images, V views, G) pooled vectors, unit rows;
    `positives[i]` the images that see what image i sees (see `pose_positives`).
    Runs on one thread: these matrices are small, and two threads were 5-30x slower
    on a busy 2-core machine."""
    torch = _torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(torch, views, positives, config)
    finally:
        torch.set_num_threads(threads)


def _train(torch, views, positives, config: HeadConfig) -> HeadTraining:
    views = np.asarray(views, np.float32)
    if views.ndim != 3 or len(views) < 2 or len(positives) != len(views):
        raise VlocError(f"head training needs (n >= 2, V, G) views and n positive lists, got shape "
                        f"{views.shape} and {len(positives)} lists")
    positives = [set(int(j) for j in p) for p in positives]
    if any(j < 0 or j >= len(views) for p in positives for j in p):
        raise VlocError(f"head training: positive indices must be in [0, {len(views)})")
    pos_arrays = [np.array(sorted(p), np.int64) for p in positives]
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    head = make_head(views.shape[2], config.hidden)
    x = torch.from_numpy(views)
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    fixed = _pairs(views, pos_arrays, np.random.default_rng(config.seed + 1))

    def fixed_loss() -> float:
        head.eval()
        with torch.no_grad():
            losses = [float(_batch_loss(head, x, positives, *(a[s] for a in fixed), config.temperature))
                      for s in _chunks(len(views), config.batch)]
        return float(np.mean(losses))

    initial = fixed_loss()
    epoch_losses = []
    for _ in range(config.epochs):
        head.train()
        pairs = _pairs(views, pos_arrays, rng)
        total = []
        for s in _chunks(len(views), config.batch):
            loss = _batch_loss(head, x, positives, *(a[s] for a in pairs), config.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total.append(loss.item())
        epoch_losses.append(float(np.mean(total)))
    final = fixed_loss()
    head.eval()
    return HeadTraining(head, initial, final, epoch_losses)


def _chunks(n: int, size: int) -> list[slice]:
    """Batches of at most `size`, none smaller than 2 (a lone anchor has no negative)."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    return [slice(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def apply_head(head, vectors: np.ndarray) -> np.ndarray:
    """(n, G) float32 unit vectors through the head."""
    torch = _torch()
    with torch.inference_mode():
        return head(torch.from_numpy(np.ascontiguousarray(vectors, np.float32))).numpy().astype(np.float32)


def save_head(head, path) -> None:
    torch = _torch()
    try:
        torch.save({k: v.detach().clone() for k, v in head.state_dict().items()}, Path(path))
    except OSError as e:
        raise MapError(f"cannot write retrieval head {path}: {e}") from None


def load_head(path, dim: int):
    """The head saved by `save_head`, checked against the input dimension."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise MapError(f"retrieval head file not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:       # torch raises several types for a bad file
        raise MapError(f"cannot read retrieval head {path}: {str(e).splitlines()[0]}") from None
    w1 = sd.get("fc1.weight") if isinstance(sd, dict) else None
    if w1 is None or w1.ndim != 2 or w1.shape[1] != dim or set(sd) != {"fc1.weight", "fc1.bias", "fc2.weight",
                                                                       "fc2.bias"}:
        raise MapError(f"retrieval head {path} does not fit {dim}-dimensional vectors")
    head = make_head(dim, int(w1.shape[0]))
    try:
        head.load_state_dict(sd)
    except RuntimeError as e:
        raise MapError(f"retrieval head {path} is corrupt: {str(e).splitlines()[0]}") from None
    return head.eval()
