"""The pose regression map configuration (also `vloc.localizers.regression`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..configs import check_keys
from ..errors import VlocError
from .losses import LOSSES, WEIGHTING_INITS
from .networks import TRUNKS

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class PoseRegressionConfig:
    loss: str = "hand-tuned"        # hand-tuned | learned | reprojection
    beta: float = 0.3               # hand-tuned: weight of the quaternion error (positions normalised);
                                    # 3 until 2026-12-06: 0.3 was lower in position on all 5 scenes of
                                    # the 5-seed sweep and in rotation on 4 (RESULTS.md)
    trunk: str = "resnet"           # resnet (from scratch) | aliked (frozen, packaged weights)
    width: int = 16                 # resnet: channels of the first stage (x2 per stage)
    feature_dim: int = 256          # F: the fully connected layer before the pose head
    image_size: int = 128           # longer image side of the network input
    epochs: int = 200               # with the cosine schedule and patience 40 (60, constant lr and 10
                                    # until 2026-12-06: every scene measured got better, RESULTS.md)
    max_minutes: float = 0.0        # training time budget (0: none): no epoch starts that would exceed it
    batch_size: int = 16
    lr: float = 1e-3
    weighting_lr: float = 1e-2      # learned loss: Adam step of s_c, s_r (at lr they move <= 1 per 1000 steps)
    weighting_init: str = "kendall"  # learned loss: s_c, s_r start at 0, -3 (kendall), or at log of the
                                     # first batch's mean errors (first-batch)
    weight_decay: float = 1e-4
    optimizer: str = "adam"         # adam (weight decay added to the gradient, L2) | adamw (decoupled)
    lr_schedule: str = "cosine"     # cosine (the network's lr decays to 0 over `epochs`, or over the
                                    # epochs that fit in max_minutes) | constant
    seed: int = 0
    augment: bool = True            # brightness / contrast jitter and small crops
    holdout_every: int = 10         # every Kth mapping frame is held out for early stopping (0: none)
    patience: int = 40              # epochs without a better held-out error before stopping
    mapnet_weight: float = 0.1      # mapnet: weight of the relative-pose terms; at 1 they held MapNet
                                    # at the mean pose on 10k images (2.89 m; 0.1: 0.915 m, PoseNet 1.10 m)
    mapnet_neighbours: int = 3      # mapnet: a frame is paired with one of its k nearest frames
    pretrain_fraction: float = 0.5  # reprojection: share of the epochs trained with hand-tuned first
    reprojection_clamp: float = 20.0    # px at image_size: errors above grow as a square root
    points_per_frame: int = 64      # reprojection: points per frame (depth, else triangulated)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise VlocError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.weighting_init not in WEIGHTING_INITS:
            raise VlocError(f"weighting_init must be one of {', '.join(WEIGHTING_INITS)}, got {self.weighting_init!r}")
        if self.optimizer not in OPTIMIZERS:
            raise VlocError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise VlocError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not self.weight_decay >= 0:
            raise VlocError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.trunk not in TRUNKS:
            raise VlocError(f"trunk must be one of {', '.join(TRUNKS)}, got {self.trunk!r}")
        positive = ("width", "feature_dim", "epochs", "batch_size", "points_per_frame", "mapnet_neighbours")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise VlocError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.image_size < 32:
            raise VlocError(f"image_size must be >= 32, got {self.image_size}")
        if not (self.beta >= 0 and self.lr > 0 and self.weighting_lr > 0 and self.mapnet_weight >= 0
                and self.reprojection_clamp > 0):
            raise VlocError("beta and mapnet_weight must be >= 0, lr, weighting_lr and reprojection_clamp > 0")
        if not 0 <= self.pretrain_fraction < 1:
            raise VlocError(f"pretrain_fraction must be in [0, 1), got {self.pretrain_fraction}")
        if not self.max_minutes >= 0:
            raise VlocError(f"max_minutes must be >= 0, got {self.max_minutes}")
        if self.holdout_every < 0 or self.patience < 1:
            raise VlocError("holdout_every must be >= 0 and patience >= 1")

    @property
    def pretrain_epochs(self) -> int:
        """Epochs trained with the hand-tuned loss before the reprojection loss."""
        return round(self.epochs * self.pretrain_fraction) if self.loss == "reprojection" else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PoseRegressionConfig:
        check_keys(cls, d, "pose regression map option(s)")
        return cls(**d)
