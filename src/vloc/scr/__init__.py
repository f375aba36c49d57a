"""Scene coordinate regression: regression forests for RGB-D (Shotton et al. 2013) with
online leaf adaptation (Cavallari et al. 2017); pose by 3-point Kabsch RANSAC from
depth or by PnP (PoseLib) from colour only."""
from .adapt import LeafAdapter
from .config import ForestConfig
from .forest import Forest, RGBDFrame, TrainingSet, best_split, read_rgbd, spread, train_forest
from .kabsch import KabschConfig, RigidResult, kabsch, pnp_from_candidates, ransac_kabsch

__all__ = ["Forest", "ForestConfig", "KabschConfig", "LeafAdapter", "RGBDFrame", "RigidResult", "TrainingSet",
           "best_split", "kabsch", "pnp_from_candidates", "ransac_kabsch", "read_rgbd", "spread", "train_forest"]
