"""Scene coordinate regression forests (Shotton et al. CVPR 2013) for RGB-D images.

Features compare two probes around pixel p whose offsets delta (metres) become pixels
through the depth, f * delta / D(p), so that a feature covers the same surface patch at
any distance:
    colour: I(p + f d1 / D(p), c1) - I(p + f d2 / D(p), c2)
    depth:  D(p + f d1 / D(p)) - D(p + f d2 / D(p))
The colour-only forest ("rgb") uses colour features with the fixed scale f / D_ref
(D_ref: the median training depth), so a query needs no depth.

A split minimises E(S) = sum over children |S_c| tr Cov(S_c) (the children's summed
squared distances of the scene coordinates to their mean), over all thresholds of each
random candidate feature at once (one sort and one prefix sum per feature). A leaf
keeps up to M modes of its scene coordinates (mean shift, Gaussian kernel) from a
reservoir of at most C coordinates, which online adaptation refills (adapt.py). At
query time each pixel gets the modes of the leaves it reaches in every tree;
`Forest.agreement` counts, per mode, the other trees that put a mode within a radius
of it (agreed modes are right far more often: the localizer draws them first). Trees
are flat arrays, saved as .npz (no pickle)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._libs import cv2
from ..datasets import Frame
from ..errors import DataError, MapError, VlocError
from ..geometry import Camera, Pose
from ..progress import progress_bar
from .config import ForestConfig

COLOUR, DEPTH = 0, 1
KINDS = ("rgbd", "rgb")
FAR = 1000.0                 # metres: the depth a probe reads where there is none
MEAN_SHIFT_SEEDS = 8         # starting points per leaf
MEAN_SHIFT_ITERATIONS = 10
FILE_VERSION = 1


# inputs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RGBDFrame:
    """One image at the forest's working size: colour, depth in metres (0 = none;
    None for colour-only queries) and the camera at that size."""

    colour: np.ndarray
    depth: np.ndarray | None
    camera: Camera


@dataclass(frozen=True)
class RGBDImages:
    """Images of one size stacked for feature lookups."""

    colour: np.ndarray               # (F, H, W, 3) uint8
    depth: np.ndarray | None         # (F, H, W) float32 metres, 0 = none
    focal: np.ndarray                # (F, 2) fx, fy in pixels

    @classmethod
    def one(cls, frame: RGBDFrame) -> RGBDImages:
        depth = None if frame.depth is None else frame.depth[None]
        return cls(frame.colour[None], depth, np.array([[frame.camera.fx, frame.camera.fy]]))


def resize_depth(depth: np.ndarray, shape: tuple[int, int], max_depth: float = 0.0) -> np.ndarray:
    """Depth (metres) at (height, width) by nearest neighbour; missing, non-finite or
    beyond `max_depth` -> 0."""
    depth = np.asarray(depth, np.float32)
    if depth.ndim != 2:
        raise DataError(f"a depth map must be a 2D array, got shape {depth.shape}")
    if depth.shape != tuple(shape):
        depth = cv2.resize(depth, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    bad = ~np.isfinite(depth) | (depth <= 0)
    if max_depth > 0:
        bad |= depth > max_depth
    return np.where(bad, 0, depth).astype(np.float32)


def working_camera(camera: Camera, shape: tuple[int, ...]) -> Camera:
    return camera.scaled(shape[1] / camera.width, shape[0] / camera.height)


def read_rgbd(frame: Frame, max_size: int, max_depth: float = 0.0) -> RGBDFrame:
    """A posed RGB-D frame at most `max_size` on its longer side."""
    from ..imageio import read_rgb
    from ..maps.depth import read_depth
    if not frame.has_depth:
        raise DataError(f"frame {frame.name} has no depth: the forest is trained on RGB-D frames")
    if not frame.depth_registered:
        raise DataError(f"frame {frame.name}: depth is not registered to the colour image")
    colour = read_rgb(frame.image_path, max_size, f"frame {frame.name}", frame.camera)
    depth = resize_depth(read_depth(frame), colour.shape[:2], max_depth)
    return RGBDFrame(colour, depth, working_camera(frame.camera, colour.shape))


def camera_points(depth: np.ndarray, camera: Camera, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, 3) camera coordinates of integer pixels (x, y) with depth."""
    d = depth[y, x].astype(np.float64)
    xy = camera.unproject(np.c_[x + 0.5, y + 0.5])        # pixel centres, COLMAP convention
    return np.c_[xy * d[:, None], d]


@dataclass(frozen=True)
class TrainingSet:
    images: RGBDImages
    cameras: list[Camera]
    cam_from_world: list[Pose]

    @classmethod
    def read(cls, frames: list[Frame], max_size: int, max_depth: float = 0.0, progress: bool = True) -> TrainingSet:
        if not frames:
            raise DataError("the forest needs at least one posed RGB-D mapping frame")
        colour = depth = None
        cameras = []
        for i, f in enumerate(progress_bar(frames, "reading RGB-D frames", progress)):
            if f.cam_from_world is None:
                raise DataError(f"frame {f.name} has no pose: the forest is trained on posed frames")
            fr = read_rgbd(f, max_size, max_depth)
            if colour is None:
                colour = np.empty((len(frames),) + fr.colour.shape, np.uint8)
                depth = np.empty((len(frames),) + fr.depth.shape, np.float32)
            if fr.colour.shape != colour.shape[1:]:
                raise DataError(f"the forest needs mapping frames of one size: {f.name} is "
                                f"{fr.colour.shape[1]}x{fr.colour.shape[0]}, {frames[0].name} "
                                f"{colour.shape[2]}x{colour.shape[1]}")
            colour[i], depth[i] = fr.colour, fr.depth
            cameras.append(fr.camera)
        focal = np.array([[c.fx, c.fy] for c in cameras])
        return cls(RGBDImages(colour, depth, focal), cameras, [f.cam_from_world for f in frames])

    def scene_coordinates(self, frame: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty((len(frame), 3))
        for f in np.unique(frame):
            i = np.flatnonzero(frame == f)
            pc = camera_points(self.images.depth[f], self.cameras[f], x[i], y[i])
            out[i] = self.cam_from_world[f].inverse().transform(pc)
        return out


def sample_pixels(valid: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, x, y) of at most n random pixels per frame where `valid` (F, H, W)."""
    frames, flat = [], []
    for f in range(len(valid)):
        idx = np.flatnonzero(valid[f])
        if len(idx) > n:
            idx = rng.choice(idx, n, replace=False)
        frames.append(np.full(len(idx), f))
        flat.append(idx)
    y, x = np.divmod(np.concatenate(flat).astype(np.int64), valid.shape[2])
    return np.concatenate(frames).astype(np.int64), x, y


@dataclass(frozen=True)
class Pixels:
    frame: np.ndarray                # (n,) int64
    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray                # (n, 2) pixels per metre of probe offset: f / D

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, i) -> Pixels:
        return Pixels(self.frame[i], self.x[i], self.y[i], self.scale[i])


# features ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Features:
    kind: np.ndarray                 # (k,) COLOUR | DEPTH
    channels: np.ndarray             # (k, 2) colour channel of each probe
    offsets: np.ndarray              # (k, 2, 2) metres: probe, (dx, dy)

    def __len__(self) -> int:
        return len(self.kind)

    def take(self, i) -> Features:
        return Features(self.kind[i], self.channels[i], self.offsets[i])


def random_features(k: int, max_offset: float, depth_share: float, rng) -> Features:
    kind = np.where(rng.random(k) < depth_share, DEPTH, COLOUR).astype(np.int8)
    return Features(kind, rng.integers(0, 3, (k, 2)).astype(np.int8),
                    rng.uniform(-max_offset, max_offset, (k, 2, 2)).astype(np.float32))


def _respond(images: RGBDImages, px: Pixels, kind: int, channels, offsets, extra: tuple):
    """Responses of features of one kind; `extra` adds axes to the pixels so that
    (k, 1, ...) feature arrays against (1, n) pixels give a (k, n) grid. Probes are
    rounded to the nearest pixel and clamped to the image (outside: the border)."""
    F, H, W = images.colour.shape[:3]
    itype = np.int32 if F * H * W * 3 < 2 ** 31 else np.int64
    frame, x, y, scale = px.frame[extra], px.x[extra], px.y[extra], px.scale[extra]
    base = (frame * (H * W)).astype(itype)

    def probe(offset):             # flat pixel index of a probe
        u = offset[..., 0] * scale[..., 0]
        u += x
        v = offset[..., 1] * scale[..., 1]
        v += y
        np.clip(np.rint(u, out=u), 0, W - 1, out=u)
        np.clip(np.rint(v, out=v), 0, H - 1, out=v)
        i = v.astype(itype)
        i *= W
        i += u.astype(itype)
        i += base
        return i

    i1, i2 = probe(offsets[..., 0, :]), probe(offsets[..., 1, :])
    if kind == DEPTH:
        if images.depth is None:
            raise VlocError("a depth feature needs depth: this forest cannot answer colour-only queries")
        d = images.depth.reshape(-1)
        a, b = d[i1], d[i2]
        a[a <= 0] = FAR
        b[b <= 0] = FAR
        a -= b
        return a
    c = images.colour.reshape(-1)
    i1 *= 3
    i1 += channels[..., 0]
    i2 *= 3
    i2 += channels[..., 1]
    out = c[i1].astype(np.float32)
    out -= c[i2]
    return out


def responses_grid(images: RGBDImages, px: Pixels, feats: Features) -> np.ndarray:
    """(k, n): every feature on every pixel."""
    out = np.empty((len(feats), len(px)), np.float32)
    for kind in (COLOUR, DEPTH):
        sel = np.flatnonzero(feats.kind == kind)
        if len(sel):
            out[sel] = _respond(images, px, kind, feats.channels[sel, None], feats.offsets[sel, None],
                                (None, slice(None)))
    return out


def responses_paired(images: RGBDImages, px: Pixels, feats: Features) -> np.ndarray:
    """(n,): feature i on pixel i."""
    out = np.empty(len(px), np.float32)
    for kind in (COLOUR, DEPTH):
        sel = np.flatnonzero(feats.kind == kind)
        if len(sel):
            out[sel] = _respond(images, px.take(sel), kind, feats.channels[sel], feats.offsets[sel],
                                (slice(None),))
    return out


# split criterion ----------------------------------------------------------------------
def spread(coords: np.ndarray) -> float:
    """|S| tr Cov(S): the summed squared distances of the coordinates to their mean."""
    c = np.asarray(coords, np.float64)
    return float(((c - c.mean(0)) ** 2).sum()) if len(c) else 0.0


def best_split(responses: np.ndarray, coords: np.ndarray, min_leaf: int = 1):
    """The (feature, threshold) of `responses` (k, m) minimising E = sum over children
    of their spread, children being response < threshold and >= threshold, each with at
    least `min_leaf` pixels. Returns (feature, threshold, E, spread of the parent), or
    None when no split lowers the spread.

    With the coordinates centred on their mean, a left child of n_l pixels summing to
    s_l has a right sibling summing to -s_l, so E = parent - |s_l|^2 m / (n_l (m - n_l)):
    one sort and one prefix sum per feature give E at every threshold."""
    k, m = responses.shape
    if m < 2 * min_leaf:
        return None
    order = np.argsort(responses, axis=1)
    r = np.take_along_axis(responses, order, 1)
    x = np.asarray(coords, np.float64)
    x = x - x.mean(0)
    parent = float((x ** 2).sum())
    s = np.cumsum(x[order[:, :-1]], axis=1)                        # (k, m - 1, 3): left sums
    n_left = np.arange(1, m, dtype=np.float64)                     # left = the first n_left
    gain = np.einsum("kij,kij->ki", s, s)
    gain *= m / (n_left * (m - n_left))
    ok = r[:, 1:] > r[:, :-1]
    ok[:, :min_leaf - 1] = False
    ok[:, m - min_leaf:] = False
    gain[~ok] = -np.inf
    f, i = np.unravel_index(np.argmax(gain), gain.shape)
    cost = parent - float(gain[f, i])
    if not np.isfinite(gain[f, i]) or cost >= parent * (1 - 1e-9):
        return None
    return int(f), float((r[f, i] + r[f, i + 1]) / 2), max(cost, 0.0), parent


# leaves -----------------------------------------------------------------------------
def mean_shift_modes(points: np.ndarray, bandwidth: float, max_modes: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Modes of each leaf's coordinates (B, C, 3) (NaN = empty slot): mean shift with a
    Gaussian kernel from a few random seeds; converged seeds closer than the bandwidth
    to a stronger one are dropped. Returns modes (B, M, 3) (NaN = none) and weights
    (B, M): the share of the leaf's coordinates within the bandwidth of the mode."""
    B, C, _ = points.shape
    valid = np.isfinite(points[..., 0])
    P = np.where(valid[..., None], points, 0).astype(np.float64)
    centre = P.sum(1, keepdims=True) / np.maximum(valid.sum(1), 1)[:, None, None]
    P = np.where(valid[..., None], P - centre, 0).astype(np.float32)          # centred per leaf
    keys = np.where(valid, rng.random((B, C)), 2.0)
    seeds = np.argsort(keys, 1)[:, :MEAN_SHIFT_SEEDS]
    seed_ok = np.take_along_axis(valid, seeds, 1)
    m = np.take_along_axis(P, seeds[..., None], 1)
    h2 = bandwidth ** 2
    p2 = (P ** 2).sum(-1)[:, None]
    Pt = P.transpose(0, 2, 1)
    for it in range(MEAN_SHIFT_ITERATIONS + 1):
        d2 = (m ** 2).sum(-1)[..., None] + p2 - 2 * (m @ Pt)         # (B, S, C)
        if it == MEAN_SHIFT_ITERATIONS:
            break
        w = np.exp(-d2 / (2 * h2)) * valid[:, None]
        m = (w @ P) / np.maximum(w.sum(-1), 1e-30)[..., None]
    support = np.where(seed_ok, ((d2 < h2) & valid[:, None]).sum(-1), 0)
    order = np.argsort(-support, 1, kind="stable")
    m, support = np.take_along_axis(m, order[..., None], 1), np.take_along_axis(support, order, 1)
    modes = np.full((B, max_modes, 3), np.nan)
    weights = np.zeros((B, max_modes))
    taken = np.zeros(B, np.int64)
    for j in range(m.shape[1]):
        near = np.linalg.norm(modes - m[:, j, None], axis=-1)      # NaN where no mode yet
        ok = (support[:, j] > 0) & (taken < max_modes) & ~(near < bandwidth).any(1)
        rows = np.flatnonzero(ok)
        modes[rows, taken[rows]] = m[rows, j]
        weights[rows, taken[rows]] = support[rows, j]
        taken[rows] += 1
    weights /= np.maximum(valid.sum(1), 1)[:, None]
    return (modes + centre).astype(np.float32), weights.astype(np.float32)


class LeafStore:
    """A reservoir of at most `capacity` scene coordinates per leaf, uniform over every
    coordinate the leaf has seen (Vitter's algorithm R, vectorised per batch)."""

    def __init__(self, n_leaves: int, capacity: int, rng):
        self.points = np.full((n_leaves, capacity, 3), np.nan, np.float32)
        self.seen = np.zeros(n_leaves, np.int64)
        self.rng = rng

    def clear(self) -> None:
        self.points[:] = np.nan
        self.seen[:] = 0

    def add(self, leaf: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Add coordinates (n, 3) reaching leaves `leaf` (n,); returns the leaves touched."""
        order = np.argsort(leaf, kind="stable")
        leaf, coords = leaf[order], coords[order]
        touched, first, counts = np.unique(leaf, return_index=True, return_counts=True)
        arrival = self.seen[leaf] + np.arange(len(leaf)) - np.repeat(first, counts)   # 0-based
        slot = np.where(arrival < self.points.shape[1], arrival,
                        (self.rng.random(len(leaf)) * (arrival + 1)).astype(np.int64))
        keep = slot < self.points.shape[1]
        self.points[leaf[keep], slot[keep]] = coords[keep]
        self.seen[touched] += counts
        return touched

    def modes(self, leaves: np.ndarray, bandwidth: float, max_modes: int, chunk: int = 1024):
        out = [mean_shift_modes(self.points[leaves[i:i + chunk]], bandwidth, max_modes, self.rng)
               for i in range(0, len(leaves), chunk)]
        if not out:
            return np.zeros((0, max_modes, 3), np.float32), np.zeros((0, max_modes), np.float32)
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


# trees ------------------------------------------------------------------------------
@dataclass
class Tree:
    features: Features               # per node (unused at leaves)
    threshold: np.ndarray            # (N,) left when response < threshold
    children: np.ndarray             # (N, 2) int32, -1 at leaves
    leaf: np.ndarray                 # (N,) int32 leaf id, -1 at internal nodes
    modes: np.ndarray | None = None      # (L, M, 3) float32, NaN = no mode
    weights: np.ndarray | None = None    # (L, M) float32

    @property
    def n_leaves(self) -> int:
        return int(self.leaf.max()) + 1

    def leaves(self, images: RGBDImages, px: Pixels) -> np.ndarray:
        """The leaf each pixel reaches."""
        node = np.zeros(len(px), np.int64)
        active = np.flatnonzero(self.leaf[node] < 0)
        while len(active):
            nd = node[active]
            r = responses_paired(images, px.take(active), self.features.take(nd))
            node[active] = self.children[nd, (r >= self.threshold[nd]).astype(np.int64)]
            active = active[self.leaf[node[active]] < 0]
        return self.leaf[node]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"kind": self.features.kind, "channels": self.features.channels, "offsets": self.features.offsets,
                "threshold": self.threshold, "children": self.children, "leaf": self.leaf,
                "modes": self.modes, "weights": self.weights}

    @classmethod
    def from_arrays(cls, a: dict) -> Tree:
        return cls(Features(a["kind"], a["channels"], a["offsets"]), a["threshold"], a["children"], a["leaf"],
                   a["modes"], a["weights"])


def _split_node(images, px, coords, idx, cfg: ForestConfig, depth_share: float, rng):
    """(feature, threshold, left mask over idx) or None for a leaf."""
    whole = len(idx) <= cfg.node_samples
    sub = idx if whole else rng.choice(idx, cfg.node_samples, replace=False)
    feats = random_features(cfg.features_per_node, cfg.max_offset, depth_share, rng)
    min_sub = max(1, cfg.min_samples_leaf * len(sub) // len(idx))
    grid = responses_grid(images, px.take(sub), feats)
    best = best_split(grid, coords[sub], min_sub)
    if best is None:
        return None
    feat = feats.take(np.array([best[0]]))
    left = (grid[best[0]] if whole else responses_grid(images, px.take(idx), feat)[0]) < best[1]
    if min(left.sum(), len(idx) - left.sum()) < cfg.min_samples_leaf:
        return None
    return feat, best[1], left


def train_tree(images: RGBDImages, px: Pixels, coords: np.ndarray, cfg: ForestConfig, depth_share: float,
               rng) -> tuple[Tree, np.ndarray]:
    """Grow a tree depth first; returns it (without modes) and each pixel's leaf."""
    kind, channels, offsets, threshold, children, leaf = [], [], [], [], [], []
    defaults = ((kind, 0), (channels, (0, 0)), (offsets, np.zeros((2, 2))), (threshold, 0.0),
                (children, (-1, -1)), (leaf, -1))

    def new_node() -> int:
        for values, default in defaults:
            values.append(default)
        return len(kind) - 1

    leaf_of = np.empty(len(coords), np.int64)
    n_leaves = 0
    todo = [(new_node(), np.arange(len(coords)), 0)]
    while todo:
        node, idx, depth = todo.pop()
        split = None
        if depth < cfg.tree_depth and len(idx) >= 2 * cfg.min_samples_leaf:
            split = _split_node(images, px, coords, idx, cfg, depth_share, rng)
        if split is None:
            leaf[node], leaf_of[idx] = n_leaves, n_leaves
            n_leaves += 1
            continue
        feat, threshold[node], left = split
        kind[node], channels[node], offsets[node] = feat.kind[0], tuple(feat.channels[0]), feat.offsets[0]
        children[node] = (new_node(), new_node())
        todo += [(children[node][1], idx[~left], depth + 1), (children[node][0], idx[left], depth + 1)]
    features = Features(np.array(kind, np.int8), np.array(channels, np.int8), np.array(offsets, np.float32))
    tree = Tree(features, np.array(threshold, np.float32), np.array(children, np.int32), np.array(leaf, np.int32))
    return tree, leaf_of


# the forest -------------------------------------------------------------------------
@dataclass
class Forest:
    kind: str                        # "rgbd" (colour + depth features) | "rgb" (colour, fixed scale)
    trees: list[Tree]
    reference_depth: float           # metres: the offset scale of the "rgb" forest

    def pixels(self, images: RGBDImages, frame: np.ndarray, x: np.ndarray, y: np.ndarray) -> Pixels:
        d = images.depth[frame, y, x] if self.kind == "rgbd" else np.full(len(frame), self.reference_depth)
        return Pixels(frame, x, y, (images.focal[frame] / d[:, None]).astype(np.float32))

    def predict(self, images: RGBDImages, px: Pixels, modes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Candidate scene coordinates (n, trees * modes, 3), NaN where none, and their
        weights (n, trees * modes); `modes`: the strongest per tree (default: all)."""
        coords, weights = [], []
        for tree in self.trees:
            leaf = tree.leaves(images, px)
            coords.append(tree.modes[leaf, :modes])
            weights.append(tree.weights[leaf, :modes])
        return np.concatenate(coords, 1), np.concatenate(weights, 1)

    def agreement(self, coords: np.ndarray, radius: float) -> np.ndarray:
        """(n, trees * modes): for each candidate of `predict`, the number of other trees
        with a candidate within `radius` (metres) of it. A coordinate two trees agree
        on is far more often right than a lone one (benchmark room, 5 trees, 10 cm:
        within 10 cm of the truth were 1.7 % of the lone candidates, 16 % of those one
        other tree agreed with, 50 % with two, 76 % with three, 86 % with four)."""
        n, k = coords.shape[:2]
        trees = len(self.trees)
        c = np.asarray(coords, np.float32)
        d2 = ((c[:, :, None] - c[:, None]) ** 2).sum(-1)              # (n, k, k), NaN where no mode
        near = (d2 < radius ** 2).reshape(n, k, trees, k // trees).any(-1)     # (n, k, trees)
        own = np.repeat(np.arange(trees), k // trees)
        near[:, np.arange(k), own] = False
        return near.sum(-1)

    def stats(self) -> dict:
        leaves = [t.n_leaves for t in self.trees]
        modes = [float(np.isfinite(t.modes[..., 0]).sum(1).mean()) for t in self.trees]
        return {"trees": len(self.trees), "nodes": sum(len(t.leaf) for t in self.trees), "leaves": sum(leaves),
                "modes_per_leaf": round(float(np.mean(modes)), 3), "reference_depth": self.reference_depth}

    def save(self, path: Path) -> None:
        arrays = {"version": np.array(FILE_VERSION), "kind": np.array(self.kind),
                  "reference_depth": np.array(self.reference_depth), "trees": np.array(len(self.trees))}
        for i, tree in enumerate(self.trees):
            arrays.update({f"tree{i}/{k}": v for k, v in tree.arrays().items()})
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> Forest:
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != FILE_VERSION:
                    raise MapError(f"forest {path} has file version {int(z['version'])}, this vloc reads "
                                   f"{FILE_VERSION}: rebuild the map")
                names = ("kind", "channels", "offsets", "threshold", "children", "leaf", "modes", "weights")
                trees = [Tree.from_arrays({k: z[f"tree{i}/{k}"] for k in names}) for i in range(int(z["trees"]))]
                return cls(str(z["kind"]), trees, float(z["reference_depth"]))
        except (OSError, KeyError, ValueError) as e:
            raise MapError(f"cannot read forest {path}: {str(e).splitlines()[0]}") from None


def train_forest(data: TrainingSet, kind: str, cfg: ForestConfig = ForestConfig(), progress: bool = True) -> Forest:
    """Grow `cfg.trees` trees, each on its own random pixels of the training frames."""
    if kind not in KINDS:
        raise VlocError(f"unknown forest kind {kind!r}; known: {', '.join(KINDS)}")
    depth = data.images.depth
    if not (depth > 0).any():
        raise DataError("no mapping frame has a pixel with valid depth: the forest cannot be trained")
    reference = float(np.median(depth[depth > 0][::16]))
    forest = Forest(kind, [], reference)
    depth_share = cfg.depth_share if kind == "rgbd" else 0.0
    for i in progress_bar(range(cfg.trees), f"training the {kind} forest", progress):
        rng = np.random.default_rng([cfg.seed, KINDS.index(kind), i])
        frame, x, y = sample_pixels(depth > 0, cfg.samples_per_frame, rng)
        coords = data.scene_coordinates(frame, x, y)
        tree, leaf_of = train_tree(data.images, forest.pixels(data.images, frame, x, y), coords, cfg,
                                   depth_share, rng)
        store = LeafStore(tree.n_leaves, cfg.leaf_capacity, rng)
        store.add(leaf_of, coords)
        tree.modes, tree.weights = store.modes(np.arange(tree.n_leaves), cfg.bandwidth, cfg.max_modes)
        forest.trees.append(tree)
    return forest
