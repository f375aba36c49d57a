"""Configurations of scene coordinate regression (stored in the maps' manifests): the
regression forest's (training, leaves, queries) and the CNN regressor's (encoder, head,
training buffer, DSAC fine-tuning, queries)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..configs import check_keys
from ..errors import VlocError
from ..estimation import PoseConfig
from .kabsch import KabschConfig


def check_ransac(r: KabschConfig, what: str) -> None:
    if not (r.inlier_threshold > 0 and min(r.hypotheses, r.max_attempts, r.score_points, r.refine_top) >= 1
            and r.min_inliers >= 3):
        raise VlocError(f"{what} ransac: inlier_threshold > 0, hypotheses, max_attempts, score_points, "
                        "refine_top >= 1 and min_inliers >= 3 are needed")


@dataclass(frozen=True)
class ForestConfig:
    trees: int = 5
    tree_depth: int = 20               # Shotton et al.: 16; on the benchmark room depth 16 capped a third
                                       # of the leaves; depth 20 and 1000 px: 90 % of the RGB-D queries,
                                       # depth 16 and 500 px: 78-80 % (the same query-time options)
    min_samples_leaf: int = 8          # a node with fewer than 2x this is a leaf
    samples_per_frame: int = 1000      # training pixels per mapping frame (drawn per tree)
    features_per_node: int = 128       # random candidate features per node
    node_samples: int = 1024           # a node's split is chosen on at most this many of its pixels
    max_offset: float = 0.3            # metres: probe offsets, pixel offset = delta * f / D(p)
                                       # (Shotton et al.: +-130 px m at f = 585, i.e. ~0.22 m)
    depth_share: float = 0.5           # share of depth-difference features (the RGB-D forest)
    max_size: int = 320                # longer image side the forest works at
    max_depth: float = 0.0             # metres: ignore depth beyond (0 = no limit)
    leaf_capacity: int = 64            # scene coordinates kept per leaf (reservoir) for mean shift
    max_modes: int = 3                 # modes kept per leaf
    bandwidth: float = 0.1             # metres: mean-shift Gaussian kernel
    rgb_forest: bool = True            # also train a colour-only forest (fixed offset scale) for PnP
    query_pixels: int = 2000           # pixels sampled per query
    consensus_radius: float = 0.1      # metres: candidates of two trees this close agree (Forest.agreement)
    consensus_boost: float = 16.0      # RGB-D queries: a candidate is drawn with its weight x boost^(other
                                       # trees agreeing) (1 = by weight alone)
    rgb_consensus: int = 1             # colour-only queries: PnP on the candidates of every mode that at
                                       # least this many other trees agree with (0: each tree's top mode)
    rgb_query_pixels: int = 6000       # colour-only queries: pixels sampled (about a quarter have an agreed
                                       # mode; benchmark room: 84 % within 5 cm / 5°, 2000 pixels and a 4 px
                                       # PnP threshold: 48 %)
    # RGB-D queries: points drawn by their candidates' weights, the winner refit by Tukey IRLS
    # within 5 cm (benchmark room: median error 2.3 -> 1.1 cm with the same forest)
    ransac: KabschConfig = KabschConfig(weighted_points=True, final_threshold=0.05)
    # PnP threshold in px at the forest's working size; on the benchmark room (6000 pixels) wrong
    # poses had up to 111 inliers at 4 px and 273 at 8 px, none at 6 px; right ones >= 200 at 6 px
    pnp: PoseConfig = PoseConfig(max_reproj_error=6.0, min_inliers=150)
    seed: int = 0

    def __post_init__(self):
        positive = ("trees", "tree_depth", "min_samples_leaf", "samples_per_frame", "features_per_node",
                    "node_samples", "leaf_capacity", "max_modes", "query_pixels", "rgb_query_pixels")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise VlocError(f"forest option {key} must be >= 1, got {getattr(self, key)}")
        if self.max_size < 16:
            raise VlocError(f"forest option max_size must be >= 16, got {self.max_size}")
        if not (self.max_offset > 0 and self.bandwidth > 0 and self.max_depth >= 0):
            raise VlocError("forest options max_offset and bandwidth must be > 0, max_depth >= 0")
        if not (self.consensus_radius > 0 and self.consensus_boost >= 1 and self.rgb_consensus >= 0):
            raise VlocError("forest options consensus_radius > 0, consensus_boost >= 1 and rgb_consensus >= 0 "
                            "are needed")
        if not 0 <= self.depth_share <= 1:
            raise VlocError(f"forest option depth_share must be in [0, 1], got {self.depth_share}")
        check_ransac(self.ransac, "forest")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ForestConfig:
        check_keys(cls, d, "forest map option(s)")
        d = dict(d)
        for key, typ in (("ransac", KabschConfig), ("pnp", PoseConfig)):
            if isinstance(d.get(key), dict):
                check_keys(typ, d[key], f"forest {key} option(s)")
                d[key] = typ(**d[key])
        return cls(**d)


SELECTIONS = ("argmax", "soft-argmax", "probabilistic")
MIN_DSAC_CELLS = 16                    # cells an image needs to be a DSAC training problem
HEADS = ("prototypes", "mlp")


@dataclass(frozen=True)
class DsacConfig:
    """End-to-end fine-tuning with DSAC (Brachmann et al. 2017): hypotheses from minimal
    sets (3-point Kabsch with depth, P3P + Gauss-Newton without), soft inlier scores,
    a selection and the expected pose loss."""
    steps: int = 300                   # fine-tuning steps (0: none); a step is `images` mapping images
    images: int = 4
    optimizer: str = "adam"            # adam | sgd (with momentum; it degraded the head, see dsac.py)
    lr: float = 1e-5                   # 1e-4 raised DSAC's own objective from a trained head (RESULTS.md)
    temperature_lr: float = 1e-2       # prototype head: own step for its softmax temperature (one
                                       # scalar every cell shares; 0: lr like the coordinates). DSAC
                                       # sharpens it (x0.6 on the benchmark rooms): RGB-D poses improve
    momentum: float = 0.9              # sgd
    hypotheses: int = 64               # minimal sets per image
    cells: int = 0                     # random cells of each image that DSAC scores and trains (0: all)
    threshold_3d: float = 0.1          # metres: soft inlier threshold with depth
    threshold_px: float = 5.0          # pixels at the working size: soft inlier threshold without depth
    softness: float = 5.0              # sigmoid(softness * (1 - error / threshold))
    alpha: float = 100.0               # selection: softmax(alpha * soft inlier count / cells)
    selection: str = "probabilistic"   # argmax | soft-argmax | probabilistic
    refine_steps: int = 2              # weighted refits of each hypothesis on its soft inliers
    coordinate_weight: float = 0.0     # each step also: this x the coordinate loss (cm) of buffer cells
                                       # (an anchor; at 1 it held the temperature where it was)
    coordinate_batch: int = 2048       # ... on this many random cells
    loss_clamp: float = 100.0          # pose loss max(degrees, cm), clamped
    minimal: str = "auto"              # hypotheses: auto (3-point Kabsch where the image has depth, else
                                       # P3P) | p3p (P3P from the pixels, even where it has depth)
    exclude_frames: int = 1            # prototype head: DSAC images use no key of their own frame and of
                                       # this many frames around it, as a query (-1: the training candidates)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScrConfig:
    """The CNN scene coordinate regressor (after ACE, Brachmann et al. 2023): a frozen
    ALIKED encoder pooled to 1/8 resolution and a regression head of 1x1 layers
    (prototypes, or ACE's MLP; see scr/cnn.py) trained on a shuffled buffer of the
    mapping images' cells; DSAC fine-tuning for scr-dsac. Mapping cost at 320 x 240 on
    one core: ~0.1 s per frame and pass for the encoder, ~45 ms per step with 16384
    prototypes and 2048 cells, ~45 s per key search over the buffer of 300 frames x 2
    passes (at the start and at each candidate refresh), ~70 ms per DSAC image."""
    encoder: str = "aliked-n16"        # frozen ALIKED dense map (packaged weights), 8 x 8 cells
    max_size: int = 320                # longer image side the network works at
    max_depth: float = 0.0             # metres: ignore depth beyond (0 = no limit)
    head: str = "prototypes"           # prototypes | mlp (ACE's; see cnn.py)
    prototypes: int = 16384            # prototypes head: keys (at most the buffer's first-pass cells)
    top_k: int = 4                     # ... softmax over the k most similar keys
    temperature: float = 0.02          # ... initial softmax temperature (learned)
    candidates: int = 16               # ... training: keys a buffer cell chooses its k from
    candidate_refreshes: int = 2       # ... chosen again after 1/2, 3/4, ... of the steps (keys move)
    exclude_frames: int = -1           # ... training: never the keys of the cell's own frame and of the
                                       #     frames this many before or after it (-1: no exclusion)
    head_width: int = 256              # mlp head: channels
    head_layers: int = 3               # ... hidden 1x1 layers (the middle ones residual)
    buffer_passes: int = 2             # encoder passes over the mapping images; all but the first
    augment_scale: float = 1.3         # ... rescale by [1/s, s] and jitter brightness and contrast
    steps: int = 1500                  # coordinate-loss steps
    batch_size: int = 2048             # buffer cells per step
    lr: float = 2e-3                   # Adam, cosine decay to lr / 20
    weight_decay: float = 0.0
    # without depth (ACE's reprojection loss): errors above the clamp grow as tanh
    reprojection_clamp: float = 20.0   # pixels at the working size
    min_depth: float = 0.1             # metres: nearer (or behind) predictions are pushed to ...
    default_depth: float = 3.0         # ... the pixel's ray at this depth
    dsac: DsacConfig = DsacConfig()
    ransac: KabschConfig = KabschConfig(min_inliers=40)
    # PnP threshold in px at the working size
    pnp: PoseConfig = PoseConfig(max_reproj_error=4.0, min_inliers=40)
    seed: int = 0

    def __post_init__(self):
        from ..retrieval.dense import MODELS
        if self.encoder not in MODELS:
            raise VlocError(f"scr option encoder must be one of {', '.join(MODELS)}, got {self.encoder!r}")
        if self.head not in HEADS:
            raise VlocError(f"scr option head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if not self.temperature > 0:
            raise VlocError(f"scr option temperature must be > 0, got {self.temperature}")
        if self.candidate_refreshes < 0:
            raise VlocError(f"scr option candidate_refreshes must be >= 0, got {self.candidate_refreshes}")
        if self.exclude_frames < -1:
            raise VlocError(f"scr option exclude_frames must be >= -1, got {self.exclude_frames}")
        for key in ("prototypes", "top_k", "candidates", "head_width", "head_layers", "buffer_passes", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise VlocError(f"scr option {key} must be >= 1, got {getattr(self, key)}")
        if self.max_size < 32:
            raise VlocError(f"scr option max_size must be >= 32, got {self.max_size}")
        if self.steps < 0 or not (self.lr > 0 and self.weight_decay >= 0 and self.augment_scale >= 1):
            raise VlocError("scr options: steps >= 0, lr > 0, weight_decay >= 0 and augment_scale >= 1 are needed")
        if not (self.reprojection_clamp > 0 and 0 < self.min_depth < self.default_depth and self.max_depth >= 0):
            raise VlocError("scr options: reprojection_clamp > 0, 0 < min_depth < default_depth, max_depth >= 0")
        d = self.dsac
        if d.selection not in SELECTIONS:
            raise VlocError(f"scr dsac selection must be one of {', '.join(SELECTIONS)}, got {d.selection!r}")
        if d.optimizer not in ("sgd", "adam") or not 0 <= d.momentum < 1:
            raise VlocError(f"scr dsac: optimizer must be sgd or adam and 0 <= momentum < 1, got {d.optimizer!r}, "
                            f"{d.momentum}")
        if d.minimal not in ("auto", "p3p"):
            raise VlocError(f"scr dsac minimal must be auto or p3p, got {d.minimal!r}")
        if d.exclude_frames < -1:
            raise VlocError(f"scr dsac exclude_frames must be >= -1, got {d.exclude_frames}")
        if d.cells != 0 and d.cells < MIN_DSAC_CELLS:
            raise VlocError(f"scr dsac cells must be 0 (all) or >= {MIN_DSAC_CELLS}, got {d.cells}")
        if d.steps < 0 or d.refine_steps < 0 or d.coordinate_weight < 0 or min(d.images, d.hypotheses,
                                                                              d.coordinate_batch) < 1:
            raise VlocError("scr dsac: steps, refine_steps, coordinate_weight >= 0, images, hypotheses, "
                            "coordinate_batch >= 1 are needed")
        if not d.temperature_lr >= 0:
            raise VlocError(f"scr dsac temperature_lr must be >= 0, got {d.temperature_lr}")
        if not min(d.lr, d.threshold_3d, d.threshold_px, d.softness, d.alpha, d.loss_clamp) > 0:
            raise VlocError("scr dsac: lr, threshold_3d, threshold_px, softness, alpha and loss_clamp must be > 0")
        check_ransac(self.ransac, "scr")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScrConfig:
        check_keys(cls, d, "scr map option(s)")
        d = dict(d)
        for key, typ in (("dsac", DsacConfig), ("ransac", KabschConfig), ("pnp", PoseConfig)):
            if isinstance(d.get(key), dict):
                check_keys(typ, d[key], f"scr {key} option(s)")
                d[key] = typ(**d[key])
        return cls(**d)
